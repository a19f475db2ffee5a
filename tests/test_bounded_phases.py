"""No phase from start to exit waits for ever: a rank frozen (SIGSTOP) before MPI is up, before
the start-up agreement or after the last step ends the job within its deadline, with a line
naming the phase; a SIGTERM ends a job whose rank is blocked in MPI (as `timeout` sends it)."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from test_faults import MPIEXEC, finish, rank_pids

pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")


def start(marker, fault, *extra):
    args = ["train", "--model", "mlp", "--dataset", f"synthetic:1x8x8:{marker}", "--batch-size",
            32, "--threads", 1, "--max-steps", 20, "--quiet", *extra]
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "dptrain.cli", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, DPTRAIN_FAULT=fault), start_new_session=True)


def kill_leftovers(marker):
    for pid in rank_pids(f"synthetic:1x8x8:{marker}"):
        os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("phase,code,named", [
    ("start", -1, "start-up: MPI initialisation"),
    ("setup", 3, "start-up: the start-up agreement"),
    ("end", 3, "end of the run: the final barrier"),
])
def test_a_rank_frozen_outside_the_training_loop_ends_the_job(phase, code, named):
    marker = {"start": 501, "setup": 502, "end": 503}[phase]
    try:
        got, err, took = finish(start(marker, f"stop:1:{phase}", "--comm-timeout", 3), timeout=60)
    finally:
        kill_leftovers(marker)
    # before MPI is up it cannot abort the job: the waiting rank dies of SIGKILL, and the
    # launcher ends the rest with its own code for that (MPICH: 9)
    assert got == code if code >= 0 else got not in (0, 2, 3), err
    assert re.search(rf"dptrain: failed: rank 0: {named}.* did not complete within [\d.]+ s", err), err


def test_sigterm_ends_a_job_whose_rank_is_blocked_in_mpi():
    """Rank 1 is frozen before the start-up agreement, rank 0 waits there (a long
    --comm-timeout: only the signal can end it soon); `timeout` signals mpiexec, which passes
    SIGTERM on to the ranks. Rank 0 cannot run its handler: its watcher ends the job."""
    proc = start(504, "stop:1:setup", "--comm-timeout", 300)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not any(
                open(f"/proc/{p}/stat").read().split()[2] == "T" for p in rank_pids("x8:504")):
            time.sleep(0.1)
        time.sleep(1.0)                           # rank 0 is in the agreement by now
        os.kill(proc.pid, signal.SIGTERM)
        code, err, took = finish(proc, timeout=30)
    finally:
        kill_leftovers(504)
    assert code == 143, err
    assert "dptrain: interrupted by SIGTERM (blocked" in err, err
