# Two commands for a newcomer (see README):
#   make train   - create .venv, install digitnet, train and evaluate the default network
#   make test    - install the test tools, then lint, type-check and run the test suite
# Pass options to train with ARGS, e.g.  make train ARGS="--data-dir ~/mnist --epochs 5"

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test lint typecheck pytest install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -e '.[test]'
	touch $@

install: $(VENV)/.installed

train: install
	$(BIN)/digitnet train $(ARGS)

lint: install
	$(BIN)/ruff check src tests benchmarks

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest $(ARGS)

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
