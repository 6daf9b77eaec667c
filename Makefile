# Set-up and the two commands of the README. Everything installs into .venv.
# TORCH_SPEC picks the torch build: on these machines the local CPU wheel 2.13.0; elsewhere set it,
# e.g. `make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"`.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
# the core + what `make demo` uses (bundled MNIST, figures); then everything the tests use
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install demo test test-all bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[mnist,plots]'
	$(PY) -m sparseforge.kernels.build || echo "note: compiled kernels unavailable; using the stock PyTorch path"
	touch $(STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test]'
	touch $(TEST_STAMP)

install: $(TEST_STAMP)

demo: $(STAMP)
	$(VENV)/bin/sparseforge demo

test: $(TEST_STAMP)
	$(PY) -m pytest

test-all: $(TEST_STAMP)
	$(PY) -m pytest -m ''

bench: $(STAMP)
	$(VENV)/bin/sparseforge bench linear

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
