# Set-up and the two entry points: `make demo` and `make test`.
# TORCH is overridable, e.g. `make test TORCH=torch==2.14.1`; the default is the CPU wheel on
# this machine's disk, so nothing downloads a CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.qtomo-installed

DEMO_DATA := data/tfim_L8_h1_pauli4.h5

.PHONY: install demo test test-slow bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet "$(TORCH)"
	$(BIN)/pip install --quiet -e ".[test,bench]"
	touch $(STAMP)

install: $(STAMP)

# simulate the critical L = 8 TFIM, fit a network (gru) and the physical mps family on the same
# records, compare both on the same test records (a few minutes on a 2-core CPU)
demo: install
	$(BIN)/qtomo simulate --state tfim --L 8 --h 1 --samples 200000 --out $(DEMO_DATA)
	$(BIN)/qtomo fit --model gru --data $(DEMO_DATA) --epochs 4 --out runs/demo_gru.pt
	$(BIN)/qtomo fit --model mps --data $(DEMO_DATA) --out runs/demo_mps.pt
	$(BIN)/qtomo compare --model runs/demo_gru.pt --model runs/demo_mps.pt --data $(DEMO_DATA) \
		--samples 20000 --json runs/demo_gru_evaluation.json --json runs/demo_mps_evaluation.json \
		--plot runs/demo_comparison.png

test: install
	$(BIN)/ruff check qtomo tests benchmarks examples
	$(BIN)/python -m pytest --doctest-modules qtomo tests

test-slow: install
	$(BIN)/python -m pytest -m slow tests

bench: install
	for script in exact_sampling mps_sampling training sampling evaluate sample_efficiency; do \
		$(BIN)/python benchmarks/$$script.py || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
