# Set-up and the two jobs the README opens with. Everything installs into ./.venv.
#   make demo   build the offline synthetic corpus, train, evaluate on unseen voices, transcribe a file
#   make test   the linters (make lint), then the test suite
# TORCH picks the PyTorch build: the default pin is a CPU wheel on machines that have one locally and PyPI's
# (CUDA) build on a normal Linux GPU box; e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cu128".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint browser clean

setup: $(STAMP)

# torch first: anything that depends on it (lightning) would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	PYTHON=$(BIN)/python bash recipes/synth/run.sh

# tests/test_web_page.py drives Debian's Chromium (playwright cannot download its own here). `make test` installs it
# when missing under CI (CI=true) or as root; a failed install is fatal only under CI (elsewhere the test skips).
ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)

test: lint $(if $(or $(CI),$(ROOT)),browser)
	$(BIN)/python -m pytest -q

# The formatter, the linter and the import rules of pyproject.toml ([tool.ruff], [tool.importlinter]).
LINTED := asr tests scripts
lint: $(STAMP)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/ruff check $(LINTED)
	cd $(CURDIR) && $(BIN)/lint-imports --no-cache

browser:
	@command -v chromium >/dev/null 2>&1 || { echo "installing chromium (for tests/test_web_page.py)"; \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  { [ -z "$(CI)" ] || exit 1; echo "warning: chromium not installed; the browser test will be skipped"; }; }

clean:
	rm -rf $(VENV) exp
