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

# The demo proves the device runtime needs no torch: its own environment gets only the
# runtime extras, then watches the bundled sample folder once with the bundled reference model.
DEMO_VENV ?= .venv-demo
DEMO_OUT ?= .demo/results

$(DEMO_VENV)/.demo-deps: pyproject.toml Makefile
	$(PYTHON) -m venv $(DEMO_VENV)
	$(DEMO_VENV)/bin/python -m pip -q --disable-pip-version-check install -e ".[onnxruntime,openvino,dicom]"
	touch $@

demo: $(DEMO_VENV)/.demo-deps
	rm -rf $(DEMO_OUT)
	$(DEMO_VENV)/bin/edgecxr watch edgecxr/samples/chest-xrays --once --out $(DEMO_OUT)
	@echo "results: $(DEMO_OUT)/results.jsonl  (status: $(DEMO_VENV)/bin/edgecxr status $(DEMO_OUT))"

test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .

# The documentation site (mkdocs, Material theme); the CLI reference is generated from the app.
cli-docs: $(VENV)/.test-deps
	$(BIN)/python -m typer edgecxr.cli.app utils docs --name edgecxr --output docs/cli.md

docs: $(VENV)/.test-deps
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

# Training speed on this machine (a benchmark, not a test); needs ../shared/data/kermany
# or DATA=<image folder root>.
DATA ?= ../shared/data/kermany
bench-train: $(VENV)/.test-deps
	$(BIN)/python train/bench_train.py $(DATA)

clean:
	rm -rf $(VENV) $(DEMO_VENV) .demo site .pytest_cache .ruff_cache
