"""The house rules of asr/: wings whose imports point one way (import-linter), one error base printed once by
the CLI, no argparse in library code, a lazy public face, and a README layout section that matches the tree."""

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import asr

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
LIBRARY = [p for p in sorted((ROOT / "asr").rglob("*.py")) if "cli" not in p.relative_to(ROOT / "asr").parts]


def _lint_copy(tmp_path: Path, plant: dict[str, str]) -> subprocess.CompletedProcess:
    """import-linter on a copy of asr/ with lines appended to some modules."""
    shutil.copytree(ROOT / "asr", tmp_path / "asr", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    for module, line in plant.items():
        with open(tmp_path / module, "a", encoding="utf-8") as f:
            f.write(f"\n{line}\n")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )


@pytest.mark.skipif(not LINT_IMPORTS.exists(), reason="import-linter is not installed (pip install -e '.[dev]')")
def test_the_import_contracts_hold_and_catch_a_planted_upward_import(tmp_path):
    clean = _lint_copy(tmp_path / "clean", {})
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "2 kept, 0 broken" in clean.stdout

    upward = _lint_copy(tmp_path / "upward", {"asr/data/audio.py": "import asr.inference.transcribe  # upward"})
    assert upward.returncode != 0
    assert "asr.data.audio -> asr.inference.transcribe" in upward.stdout

    sideways = _lint_copy(tmp_path / "sideways", {"asr/model/features.py": "import asr.decoding.greedy"})
    assert sideways.returncode != 0 and "asr.model.features -> asr.decoding.greedy" in sideways.stdout

    lightning = _lint_copy(tmp_path / "lightning", {"asr/inference/transcribe.py": "import lightning"})
    assert lightning.returncode != 0
    assert "Lightning only under asr.training BROKEN" in lightning.stdout


def test_no_library_function_takes_an_argparse_namespace():
    offenders = []
    for path in LIBRARY:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.annotation is not None and "Namespace" in ast.unparse(arg.annotation):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    # Lightning's logger interface hands hyper-parameters over as a Namespace; that override is not ours to shape.
    offenders = [o for o in offenders if not o.endswith("log_hyperparams")]
    assert not offenders, offenders


def test_errors_are_printed_only_by_the_cli_and_derive_from_one_base():
    import asr.errors

    printing = re.compile(r"""print\(\s*f?["']asr: error""")
    printers = [str(p.relative_to(ROOT)) for p in LIBRARY if printing.search(p.read_text(encoding="utf-8"))]
    assert not printers, f"only asr/cli prints 'asr: error:'; also found in {printers}"
    classes = [v for v in vars(asr.errors).values() if isinstance(v, type) and issubclass(v, Exception)]
    assert len(classes) >= 15 and all(issubclass(c, asr.ASRError) for c in classes)
    defined_elsewhere = []
    for path in LIBRARY:
        if path.name == "errors.py":
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Error"):
                defined_elsewhere.append(f"{path.relative_to(ROOT)}: {node.name}")
    assert not defined_elsewhere, f"user-facing errors live in asr/errors.py: {defined_elsewhere}"


def test_a_bugs_value_error_is_not_dressed_as_a_user_error(monkeypatch):
    from asr import cli

    def buggy(args):
        raise ValueError("an internal bug")

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser._subparsers._group_actions[0].choices["export"].set_defaults(func=buggy)
    with pytest.raises(ValueError, match="an internal bug"):
        cli.main(["export", "--model", "m.pt"])


def test_import_asr_and_asr_help_load_no_torch():
    code = (
        "import sys, contextlib, io\n"
        "import asr\n"
        "assert 'torch' not in sys.modules, 'import asr'\n"
        "from asr.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'asr --help'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_the_public_face_is_the_library_functions_themselves():
    from asr.decoding.beam_search import BeamSearchDecoder
    from asr.decoding.greedy import GreedyDecoder
    from asr.evaluation.evaluate import evaluate
    from asr.inference.api import Model, load_model, transcribe
    from asr.inference.streaming import open_stream
    from asr.inference.transcribe import Transcript
    from asr.training.config import load_config
    from asr.training.train import train

    assert asr.load_model is load_model and asr.transcribe is transcribe and asr.evaluate is evaluate
    assert asr.Model is Model and asr.Transcript is Transcript
    assert asr.train is train and asr.open_stream is open_stream and asr.load_config is load_config
    assert asr.GreedyDecoder is GreedyDecoder and asr.BeamSearchDecoder is BeamSearchDecoder
    assert asr.ASRError is __import__("asr.errors").errors.ASRError
    assert callable(asr.transcribe) and asr.transcribe.__module__ == "asr.inference.api"
    assert set(asr.__all__) <= set(dir(asr))


def test_the_readme_layout_names_every_module():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## Layout") :]
    section = section[: section.index("```", section.index("```") + 3)]
    missing = []
    for path in sorted((ROOT / "asr").rglob("*.py")):
        rel = path.relative_to(ROOT / "asr")
        if rel.name == "__init__.py" and rel.parent != Path("cli") and rel.parent != Path("."):
            continue  # a wing's docstring
        wing = rel.parts[0] + "/" if len(rel.parts) > 1 else None
        if not re.search(rf"(?<![\w/]){re.escape(rel.name)}", section) or (wing and wing not in section):
            missing.append(str(rel))
    assert not missing, f"README's layout section does not name {missing}"
    wings = {p.name for p in (ROOT / "asr").iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert wings == {"data", "model", "decoding", "inference", "evaluation", "training", "serving", "cli", "corpora"}


RUFF = Path(sys.executable).with_name("ruff")


@pytest.mark.skipif(not RUFF.exists(), reason="ruff is not installed (pip install -e '.[dev]')")
def test_the_linters_read_every_wing():
    """ruff's excludes name the top-level data/ and exp/ folders only (a bare "data" also hid asr/data/)."""
    out = subprocess.run(
        [str(RUFF), "check", "--show-files", "asr", "tests", "scripts"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    read = {Path(line.strip()).resolve().relative_to(ROOT).as_posix() for line in out.splitlines() if line.strip()}
    expected = {p.relative_to(ROOT).as_posix() for p in (ROOT / "asr").rglob("*.py")}
    assert expected <= read, sorted(expected - read)
