PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP_RUN := $(VENV)/.installed-run
STAMP_TEST := $(VENV)/.installed-test

.PHONY: demo test lint format bench figures clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(STAMP_RUN): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

$(STAMP_TEST): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@ $(STAMP_RUN)

demo: $(STAMP_RUN)
	$(BIN)/gradflow demo --out gradflow-demo

# One OpenBLAS thread: its busy-waiting threads fight XLA's for the 2 cores.
test: $(STAMP_TEST)
	OPENBLAS_NUM_THREADS=1 $(BIN)/python -m pytest

lint: $(STAMP_TEST)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP_TEST)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP_TEST)
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

figures: $(STAMP_RUN)
	$(BIN)/python -m gradflow.cli figures --experiments experiments --out figures

clean:
	rm -rf $(VENV) gradflow-demo build *.egg-info
