"""The MPI tests run with the collective-order checker in strict mode: every collective is
compared across ranks before it is posted, so a rank that posts a different one fails the
test with a message naming both, instead of mixing sums or hanging."""
import os
import sys
from pathlib import Path

import pytest

if "--with-mpi" in sys.argv:            # under mpiexec only: subprocess tests keep their own
    os.environ.setdefault("DPTRAIN_CHECK_COLLECTIVES", "strict")
sys.path.insert(0, str(Path(__file__).parents[1]))


@pytest.fixture(params=["host", "device-like"])
def timing(request, monkeypatch):
    """Run a test with host results (read at once), then with device-like results whose
    readiness differs per rank (tests/device_timing.py)."""
    if request.param == "device-like":
        import device_timing
        from mpi4py import MPI
        device_timing.install(monkeypatch, MPI.COMM_WORLD.Get_rank())
    return request.param
