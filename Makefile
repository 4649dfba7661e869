PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test
STAMP_DOCS := $(VENV)/.installed-docs

.PHONY: demo test docs mutants dist lint format bench figures clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The distribution was called "gradflow" up to 0.1.0 and is "gradflow-jax" now;
# an old install of ours in this venv would shadow the new name, so it goes.
UNINSTALL_OLD := $(BIN)/python -m pip uninstall -q -y gradflow 2>/dev/null || true

$(STAMP_RUN): pyproject.toml setup.py | $(BIN)/python
	$(UNINSTALL_OLD)
	$(BIN)/python -m pip install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml setup.py | $(BIN)/python
	$(UNINSTALL_OLD)
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(STAMP_RUN)

$(STAMP_DOCS): pyproject.toml setup.py | $(BIN)/python
	$(UNINSTALL_OLD)
	$(BIN)/python -m pip install -q -e '.[docs]'
	touch $@ $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(BIN)/gradflow demo --out gradflow-demo

# One OpenBLAS thread: its busy-waiting threads fight XLA's for the 2 cores.
# Two workers, a test file each (module fixtures run once): most tests are
# single-threaded compilation, so two cores finish in about 0.6x the time of one
# worker. TEST_WORKERS=0 runs in one process.
# Coverage: a per-module table of gradflow at the end (line coverage).
TEST_WORKERS ?= 2
test: $(STAMP_TEST)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile \
		--cov=gradflow --cov-report=term

# The documentation site into docs/_build/html (open index.html; it needs no
# network). Warnings are errors; the tutorials (docs/tutorials/*.md) run at
# build time, cached in docs/_build/.jupyter_cache until they change.
# -E re-reads every page: the API pages follow the packages' __all__.
docs: $(STAMP_DOCS)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m sphinx -E -W --keep-going -b html \
		docs docs/_build/html
	@echo "docs: open docs/_build/html/index.html"

# Plant each curated bug (mutants/mutants.toml) in a copy of the repository and run
# the tests meant to catch it: prints caught/survived per mutant. Not part of
# `make test` (about 20 minutes on 2 cores); run it before closing an issue that
# touches the numerical core, clipping or resume code.
mutants: $(STAMP_TEST)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python mutants/run.py

# The wheel and the sdist into dist/ (with this venv's setuptools: no download).
dist: $(STAMP_TEST)
	$(BIN)/python -m build --no-isolation --outdir dist .

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP_TEST)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP_TEST)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

# --force: figures/ holds the project's own figures, remade when a config (or a
# default it gains) changes; files gradflow did not write are still never touched.
figures: $(STAMP_RUN)
	$(BIN)/python -m gradflow.cli figures --experiments experiments --out figures --force

clean:
	rm -rf $(VENV) gradflow-demo build dist *.egg-info docs/_build
