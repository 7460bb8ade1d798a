# Set-up and the two jobs the README opens with. Everything installs into ./.venv.
#   make demo   build the offline synthetic corpus, train, evaluate on unseen voices, transcribe a file
#   make test   the test suite
# TORCH picks the PyTorch build: the default pin is a CPU wheel on machines that have one locally and PyPI's
# (CUDA) build on a normal Linux GPU box; e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cu128".
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test clean

setup: $(STAMP)

# torch first: anything that depends on it (lightning) would otherwise pull a multi-GB CUDA build.
$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	PYTHON=$(BIN)/python bash recipes/synth/run.sh

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) exp
