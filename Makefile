# `make test` and `make demo` work on a fresh machine: each creates the virtual environment
# it needs. torch is pinned to the CPU build that the development machines carry; install
# another build first in your own environment if you have a GPU.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: test lint docs cli-docs demo bench-train clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.test-deps: pyproject.toml Makefile | $(BIN)/python
	$(PIP) install "$(TORCH)"
	$(PIP) install -e ".[train,export,dicom,dev,docs]"
	touch $@

test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

# The documentation site (mkdocs, Material theme); the CLI reference is generated from the app.
cli-docs: $(VENV)/.test-deps
	$(BIN)/python -m typer edgecxr.cli.app utils docs --name edgecxr --output docs/cli.md

docs: $(VENV)/.test-deps
	$(BIN)/mkdocs build --strict --site-dir site

# Training speed on this machine (a benchmark, not a test); needs ../shared/data/kermany
# or DATA=<image folder root>.
DATA ?= ../shared/data/kermany
bench-train: $(VENV)/.test-deps
	$(BIN)/python train/bench_train.py $(DATA)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
