# `make test` and `make demo` set themselves up: a virtual environment in .venv with the project
# installed under the tested versions in constraints.txt.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test demo bench lint format clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable ".[test,gpu,references]"
	touch $(STAMP)

## demo: the headline job: RNN against LSTM, exploding with and without clipping, runs/demo/report.html
demo: $(STAMP)
	$(BIN)/bptt demo --out runs/demo

## test: lint, type-check src/ (mypy --strict), then the whole suite (two workers)
test: $(STAMP)
	$(BIN)/ruff check src tests examples
	$(BIN)/ruff format --check src tests examples
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2

## bench: the engine against torch.nn's fused modules (a few minutes)
bench: $(STAMP)
	$(BIN)/bptt bench --diagnostics --json runs/bench.json

## format: apply ruff's fixes and formatting
format: $(STAMP)
	$(BIN)/ruff check --fix src tests
	$(BIN)/ruff format src tests

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache .hypothesis src/*.egg-info
