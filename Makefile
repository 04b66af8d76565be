# Two commands set everything up on a fresh machine: `make test` and `make demo`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# On these machines `pip install torch==2.13.0` takes a local CPU wheel; elsewhere it is a normal PyPI install.
TORCH_SPEC ?= torch==2.13.0

# A second environment with the oldest supported TransformerLens and SAELens beside it (make test-compat).
COMPAT_VENV := .venv-tl2
COMPAT_STAMP := $(COMPAT_VENV)/.installed

.PHONY: install test browser lint-js test-compat test-all demo demo-all reproduce bench clean

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

# ESLint over the viewer's scripts (not part of `make test`: installing it from the npm registry took
# minutes here). tests/visualization/test_javascript.py runs it whenever it is installed.
lint-js:
	cd tests/visualization/eslint && npm ci --no-audit --no-fund
	tests/visualization/eslint/node_modules/.bin/eslint -c tests/visualization/eslint/eslint.config.mjs sparse_lens/visualization/static/*.js

$(COMPAT_STAMP): pyproject.toml tests/compat/constraints-tl2.txt
	$(PY) -m venv $(COMPAT_VENV)
	$(COMPAT_VENV)/bin/pip install -q --upgrade pip
	$(COMPAT_VENV)/bin/python -c "import torch" 2>/dev/null || $(COMPAT_VENV)/bin/pip install -q "$(TORCH_SPEC)" || $(COMPAT_VENV)/bin/pip install -q torch
	$(COMPAT_VENV)/bin/pip install -q -c tests/compat/constraints-tl2.txt -e ".[dev]" sae-lens
	touch $(COMPAT_STAMP)

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -rs -m "not slow" tests
	$(MAKE) test-compat

# The model, tasks and pruning tests under TransformerLens 2.16.1, with SAELens installed beside it.
test-compat: $(COMPAT_STAMP)
	$(COMPAT_VENV)/bin/python -m pytest -q -m "not slow" tests/compat tests/model tests/tasks tests/pruning

test-all: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/sparse-lens prune python-sparse-tiny --task single_double_quote --task bracket_counting --out runs/demo
	$(BIN)/sparse-lens report runs/demo

demo-all: $(STAMP)
	$(BIN)/sparse-lens prune python-sparse-tiny --all-tasks --out runs/demo-all

# The paper's headline (docs/reproduce.md): sparse vs dense-at-matched-loss circuits on every task both
# models reach, mask-training seeds 0 and 1; report in runs/reproduce/report.md.
reproduce: $(STAMP)
	$(BIN)/sparse-lens reproduce --out runs/reproduce

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_model.py

clean:
	rm -rf $(VENV) $(COMPAT_VENV) runs
