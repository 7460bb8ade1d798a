"""What ``import asr`` does to the process."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def spincount(env_value: str | None, torch_first: bool = False, then: str = "import asr") -> str:
    """GOMP_SPINCOUNT in a fresh interpreter after ``then`` runs (torch imported before it if ``torch_first``)."""
    env = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    if env_value is not None:
        env["GOMP_SPINCOUNT"] = env_value
    env["PYTHONPATH"] = str(ROOT)
    code = ("import torch\n" if torch_first else "") + then + "\nimport os; print(os.environ.get('GOMP_SPINCOUNT'))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def test_import_asr_shortens_the_openmp_spin_unless_the_user_chose_one():
    assert spincount(None) == "1000"
    assert spincount("300000") == "300000"
    # torch imported first: its OpenMP runtime has read the environment already, so asr leaves it alone
    assert spincount(None, torch_first=True) == "None"


# `asr train` as far as its configuration (no training runs): the spin is set before anything else
TRAIN = "from asr.cli import main; main(['train', '--print-config', '-q'])"


def test_asr_train_spins_a_little_longer_unless_the_user_chose_or_torch_is_loaded():
    from asr import openmp

    assert spincount(None, then=TRAIN) == openmp.TRAINING == "3000"
    assert spincount("300000", then=TRAIN) == "300000"
    assert spincount("1000", then=TRAIN) == "1000"  # a user's choice, even when it is asr's own default
    assert spincount(None, torch_first=True, then=TRAIN) == "None"


# --- the distribution: its name, licence, changelog, citation, and one version everywhere ----------------------


def pyproject() -> dict:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_the_distribution_has_a_name_of_its_own_and_one_version():
    from setuptools.config.pyprojecttoml import read_configuration

    import asr

    project = pyproject()["project"]
    assert project["name"] == "asr-rnn-ctc"  # PyPI's "asr" is another project
    assert "version" in project["dynamic"] and "version" not in project
    resolved = read_configuration(ROOT / "pyproject.toml")["project"]  # what a wheel's metadata would say
    assert resolved["version"] == asr.__version__


def test_asr_version_prints_the_package_version():
    import asr

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "asr", "--version"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and out.stdout.strip() == f"asr {asr.__version__}"


def test_model_files_record_the_package_version(trained_model):
    import torch

    import asr

    obj = torch.load(trained_model / "model.pt", map_location="cpu", weights_only=True)
    assert obj["asr_version"] == asr.__version__


def test_license_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text and "END OF TERMS AND CONDITIONS" in text
    )
    assert len(text.splitlines()) > 150
    assert pyproject()["project"]["license"] == {"text": "Apache-2.0"}


def test_changelog_and_citation_name_this_version():
    import re

    import yaml

    import asr

    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## \[(\d+\.\d+\.\d+[^\]]*)\]", changelog, flags=re.M)
    assert versions and versions[0] == asr.__version__
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert citation["cff-version"] == "1.2.0" and citation["version"] == asr.__version__
    assert citation["license"] == "Apache-2.0" and citation["authors"] and citation["title"]


def test_every_install_hint_names_this_distribution_and_a_real_extra():
    import re

    extras = set(pyproject()["project"]["optional-dependencies"])
    hint = re.compile(r"pip install ['\"]?([A-Za-z0-9_.-]+)\[([a-z0-9_,]+)\]")
    files = [ROOT / "README.md", ROOT / "CHANGELOG.md", *ROOT.glob("asr/**/*.py"), *ROOT.glob("docs/*.md")]
    files += [*ROOT.glob("recipes/**/*.md")]
    seen = 0
    for path in files:
        for name, wanted in hint.findall(path.read_text(encoding="utf-8")):
            if name == ".":  # pip install -e ".[dev]": a clone's own checkout, whatever its name
                continue
            assert name == "asr-rnn-ctc", f"{path}: pip install {name}[{wanted}]"
            assert set(wanted.split(",")) <= extras, f"{path}: unknown extra in [{wanted}]"
            seen += 1
    assert seen >= 8
