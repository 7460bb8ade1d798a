"""What ``import asr`` does to the process."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spincount(env_value: str | None, torch_first: bool = False) -> str:
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if env_value is not None:
        env["GOMP_SPINCOUNT"] = env_value
    env["PYTHONPATH"] = str(ROOT)
    code = ("import torch\n" if torch_first else "") + "import asr, os; print(os.environ.get('GOMP_SPINCOUNT'))"
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout.strip()


def test_import_asr_shortens_the_openmp_spin_unless_the_user_chose_one():
    assert spincount(None) == "1000"
    assert spincount("300000") == "300000"
    # torch imported first: its OpenMP runtime has read the environment already, so asr leaves it alone
    assert spincount(None, torch_first=True) == "None"
