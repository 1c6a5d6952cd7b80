# Set-up and the two entry points: `make demo` and `make test`.
# TORCH is overridable, e.g. `make test TORCH=torch==2.14.1`; the default is the CPU wheel on
# this machine's disk, so nothing downloads a CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.qtomo-installed

DEMO_DATA := data/tfim_L8_h1_pauli4.h5
DEMO_MODEL := runs/demo_gru.pt

.PHONY: install demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/qtomo simulate --state tfim --L 8 --h 1 --samples 100000 --out $(DEMO_DATA)

test: install
	$(BIN)/ruff check qtomo tests benchmarks
	$(BIN)/python -m pytest --doctest-modules qtomo tests

test-slow: install
	$(BIN)/python -m pytest -m slow tests

bench: install
	$(BIN)/python benchmarks/exact_sampling.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
