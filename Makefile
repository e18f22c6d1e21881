# Two commands for a newcomer (see README):
#   make train   - create .venv, install digitnet, train and evaluate the default network
#   make test    - install the test tools, then lint, type-check and run the test suite
# Pass options with ARGS, e.g.  make train ARGS="--dataset digits"  or  make test ARGS="-k metrics"

# MNIST: $DIGITNET_DATA_DIR if set; else the project's shared copy when it sits beside the
# checkout (../shared/data/mnist); else digitnet's cache or a download.
ifeq ($(origin DIGITNET_DATA_DIR),undefined)
  ifneq ($(wildcard ../shared/data/mnist/train-images-idx3-ubyte*),)
    export DIGITNET_DATA_DIR := $(abspath ../shared/data/mnist)
  endif
endif

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=

.PHONY: train test lint typecheck pytest install install-test bench tutorial clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

train: install
	$(BIN)/digitnet train $(ARGS)

lint: install-test
	$(BIN)/ruff check src tests benchmarks examples

typecheck: install-test
	$(BIN)/mypy

pytest: install-test
	$(BIN)/pytest $(ARGS)

test: lint typecheck pytest

# Speed comparison with PyTorch (CPU build) and scikit-learn; see README "Speed".
bench: install-test
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/python -m benchmarks.compare $(ARGS)

# docs/tutorial.ipynb executed (outputs and figures) into runs/tutorial.ipynb; the committed
# notebook has no outputs, and the test suite runs it.
tutorial: install-test
	$(BIN)/python -c "import nbformat, nbclient, pathlib; nb = nbformat.read('docs/tutorial.ipynb', 4); nbclient.NotebookClient(nb, timeout=300, kernel_name='python3').execute(); pathlib.Path('runs').mkdir(exist_ok=True); nbformat.write(nb, 'runs/tutorial.ipynb')"
	@echo "wrote runs/tutorial.ipynb"

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
