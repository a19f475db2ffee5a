"""scripts/machine_ceiling.py: the machine's side of weak scaling, run small."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "machine_ceiling.py"
MPIEXEC = Path(sys.executable).parent / "mpiexec"


def run(args, ranks=None):
    cmd = [sys.executable, str(SCRIPT), *args]
    if ranks:
        if not MPIEXEC.exists():
            pytest.skip("no mpiexec next to this Python")
        cmd = [str(MPIEXEC), "-n", str(ranks), *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=240,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_cores_times_each_core_alone_and_all_busy():
    out = run(["cores", "3", "1"])
    for c in sorted(os.sched_getaffinity(0)):
        assert re.search(rf"^cpu{c}: alone [\d.]+ ms a step .*all cores busy [\d.]+", out, re.M), out
    assert re.search(r"ceiling of a synchronous job .*: \d\.\d{3}$", out, re.M), out


def test_allreduce_checks_the_window_sum_against_mpi_and_times_both():
    out = run(["allreduce", "1001", "5"], ranks=2)
    assert re.search(r"^MPI: 1001 float32 values, 2 ranks, 5 calls .*median [\d.]+ us", out, re.M), out
    assert re.search(r"^shared-memory window: 1001 float32 values, 2 ranks", out, re.M), out


def test_split_runs_uneven_shares_of_one_global_batch():
    out = run(["split", "2", "3", "1"], ranks=2)
    for row in ("1 rank", "64/64", "62/66"):
        assert re.search(rf"^{row}: [\d.]+ ms a step .*efficiency against 1 rank \d\.\d{{3}}$",
                         out, re.M), out


def test_sync_points_time_steps_with_and_without_allreduces():
    out = run(["sync-points", "0.2", "5"], ranks=2)
    for row in ("no exchange", "1 Allreduce a step", r"1 Allreduce a segment \(5 a step\)"):
        assert re.search(rf"^{row}: [\d.]+ ms a step .*efficiency against no exchange \d\.\d{{3}}$",
                         out, re.M), out
