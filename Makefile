# Two commands set everything up on a fresh machine: `make test` and `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# On these machines `pip install torch==2.13.0` takes a local CPU wheel; elsewhere it is a normal PyPI install.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test browser test-all demo demo-all bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Headless Chromium for the browser tests (tests/visualization): Debian's package, installed with apt
# where we run as root and it is missing (never a browser that playwright downloads). Where it cannot
# be installed the browser tests are skipped, and `pytest -rs` prints why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || \
	    echo "note: Chromium could not be installed (needs root and apt): the browser tests will be skipped"; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -rs -m "not slow" tests

test-all: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/sparse-lens prune python-sparse-tiny --task single_double_quote --task bracket_counting --out runs/demo

demo-all: $(STAMP)
	$(BIN)/sparse-lens prune python-sparse-tiny --all-tasks --out runs/demo-all

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf $(VENV) runs
