# `make test` and `make demo` work on a fresh machine: each creates the virtual environment
# it needs. torch is pinned to the CPU build that the development machines carry; install
# another build first in your own environment if you have a GPU.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH ?= torch==2.13.0
PIP := $(BIN)/python -m pip -q --disable-pip-version-check

.PHONY: test test-device lint docs cli-docs demo bench-train clean

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

# The suite runs in PYTEST_WORKERS processes (pytest-xdist), a test file per worker at a time, so a
# module's fixtures are built once: much of a test's time is spent waiting on a PACS, a browser or an
# engine in another process, which a second worker fills (on 2 cores: 8.1 min alone, about 5 with 2).
# A worker that dies is not replaced (--max-worker-restart=0): with --dist loadfile a replaced worker
# can leave xdist waiting for ever (pytest-xdist #784, #1313), so the run ends red instead, naming the
# test the worker died in (pyproject's -ra) and printing its stack (tests/conftest.py).
PYTEST_WORKERS ?= 2

test: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest --ignore=tests/device -n $(PYTEST_WORKERS) --dist loadfile --max-worker-restart=0
	$(MAKE) test-device

# The device runtime tested as it ships: the torch-free demo environment (plus pytest), the
# bundled reference model and samples, the real `edgecxr` command (tests/device).
$(DEMO_VENV)/.device-test-deps: $(DEMO_VENV)/.demo-deps
	$(DEMO_VENV)/bin/python -m pip -q --disable-pip-version-check install "pytest>=8"
	touch $@

test-device: $(DEMO_VENV)/.device-test-deps
	$(DEMO_VENV)/bin/python -m pytest tests/device

lint: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy

# The documentation site (mkdocs, Material theme, both pinned in pyproject's [docs]: Material for
# MkDocs reaches end of life on 2027-05-05); the CLI reference is generated from the app.
# The site needs no network to show: mermaid is served from docs/assets, fonts are the system's.
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
	rm -rf $(VENV) $(DEMO_VENV) .demo site .pytest_cache .ruff_cache .mypy_cache
