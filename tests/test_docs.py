"""The fault matrix (docs/reliability.md) names a test for every fault: each one must exist."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_test_the_fault_matrix_names_exists():
    text = (ROOT / "docs" / "reliability.md").read_text(encoding="utf-8")
    refs = set(re.findall(r"(tests/[\w/]+\.py)::(\w+)", text))
    assert len(refs) >= 25, "the fault matrix should name a test for at least 25 faults"
    defined: dict[str, set[str]] = {}
    missing = []
    for path, name in sorted(refs):
        if path not in defined:
            file = ROOT / path
            tree = ast.parse(file.read_text(encoding="utf-8")) if file.is_file() else ast.Module(body=[])
            defined[path] = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
        if name not in defined[path]:
            missing.append(f"{path}::{name}")
    assert not missing, f"docs/reliability.md names tests that do not exist: {missing}"
