import shutil
import sys
from pathlib import Path

import pytest

from netbed import NetBed, skip_reason


@pytest.fixture
def netbed():
    """A factory: `netbed(nodes=2, bw="100mbit")` builds a bed and returns it up; every bed it
    made is torn down after the test, passed, failed or erroring. Skips (one line) where the
    machine cannot hold a bed, or cannot run MPI across it."""
    beds = []

    def make(nodes=2, mpi=True, **shape):
        reason = skip_reason(need_iptables=bool(shape.get("loss") or shape.get("delay")))
        if reason:
            pytest.skip(reason)
        if mpi and not (Path(sys.executable).parent / "mpiexec").exists():
            pytest.skip("no mpiexec next to this Python: MPI across the bed needs the venv's MPICH")
        if shape.get("delay") and not shutil.which("gcc"):
            pytest.skip("delay on the bed needs gcc to build tests/netbed/nfq_delay.c")
        bed = NetBed(nodes, **shape)
        beds.append(bed)
        return bed.up()

    yield make
    for bed in beds:
        bed.down()
