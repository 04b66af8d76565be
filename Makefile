# Two commands set everything up on a fresh machine: `make test` and `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# On these machines `pip install torch==2.13.0` takes a local CPU wheel; elsewhere it is a normal PyPI install.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test test-all demo demo-all bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH_SPEC)" || $(BIN)/pip install -q torch
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" tests

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
