"""Failures under mpiexec end the whole job: no rank is left hanging, work is not lost.

Faults are injected with DPTRAIN_FAULT=KIND:RANK:STEP (dptrain/train/faults.py) or by
signalling the rank processes from outside, as a scheduler or an OOM killer would.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dptrain.train import checkpoint

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
RUN = ["train", "--model", "thesis-cnn", "--dataset", "synthetic:1x28x28:3000", "--quiet"]
LONG_RUN = RUN + ["--epochs", 100]


def start(args, fault=None, n=2):
    env = dict(os.environ, **({"DPTRAIN_FAULT": fault} if fault else {}))
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "dptrain.cli", *map(str, args)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)


def finish(proc, timeout):
    """(returncode, stderr, seconds); kills the job if it outlives ``timeout``, after asking
    its ranks where they are (SIGQUIT: every thread's stack) for the failure message."""
    t0 = time.time()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the job was still running after {timeout} s: it hung; where its ranks "
                    f"were:\n{stacks_then_kill(proc, python_descendants(proc.pid))}")
    return proc.returncode, err, time.time() - t0


def _process_table() -> dict[int, tuple[int, list[bytes]]]:
    """Every process: pid -> (parent pid, command line)."""
    table = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            args = (d / "cmdline").read_bytes().split(b"\0")
            parent = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        table[int(d.name)] = (parent, args)
    return table


def _descendants(table, pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for child, (parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            todo.append(child)
            found.append(child)
    return found


def python_descendants(pid: int) -> list[int]:
    """The Python processes below ``pid`` (a job's ranks under its mpiexec)."""
    return [child for child in _descendants(_process_table(), pid) if is_python(child)]


def is_python(pid: int) -> bool:
    """Whether process ``pid`` runs a Python interpreter (a rank, not a launcher)."""
    try:
        return b"python" in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
    except OSError:
        return False


def stacks_then_kill(proc, ranks, kill=None) -> str:
    """SIGQUIT to ``ranks`` (each prints its threads' stacks to the job's stderr), a moment
    for the lines to travel, then SIGKILL to the job (``kill``, else its process group);
    the end of what the job wrote."""
    for pid in ranks:
        try:
            os.kill(pid, signal.SIGQUIT)
        except ProcessLookupError:
            pass
    time.sleep(1.5)
    os.killpg(proc.pid, signal.SIGKILL)
    if kill is not None:
        kill()
    _, err = proc.communicate()
    return (err or "")[-8000:]


def rank_pids(marker: str, job: int | None = None) -> list[int]:
    """Python processes (ranks, not mpiexec) whose command line holds ``marker``, and with
    ``job`` (the pid of the test's mpiexec) only its descendants: the unit tests run in
    parallel, and another test's job may carry the same marker. A child a rank forked (before
    its exec it is a copy of the rank, command line and maps alike) is not a rank: only
    processes whose parent is not one of them count."""
    table = _process_table()
    scope = set(_descendants(table, job)) if job is not None else table
    parents = {pid: parent for pid, (parent, args) in table.items() if pid in scope
               and marker.encode() in b" ".join(args)
               and b"python" in Path(args[0].decode()).name.encode()}
    return [pid for pid, parent in parents.items() if parent not in parents]


def wait_for_checkpoints(d: Path, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline and not checkpoint.list_checkpoints(d):
        time.sleep(0.2)
    assert checkpoint.list_checkpoints(d), "training never reached its first checkpoint"


def test_sigkill_of_one_rank_ends_the_job_within_30s(tmp_path):
    d = tmp_path / "ck"
    proc = start(LONG_RUN + ["--checkpoint-dir", d, "--checkpoint-every", 5])
    wait_for_checkpoints(d)                                   # mid-training, mid-epoch
    pids = rank_pids(str(d))
    assert len(pids) == 2, pids
    os.kill(pids[1], signal.SIGKILL)
    code, err, took = finish(proc, timeout=30)
    assert code != 0 and took < 30
    checkpoint.read(checkpoint.list_checkpoints(d)[-1])       # the last checkpoint is intact


def test_exception_on_one_rank_aborts_with_exit_3():
    code, err, _ = finish(start(LONG_RUN, fault="raise:1:3"), timeout=60)
    assert code == 3, err
    # one line from dptrain (MPI may add its own abort notice), rank and step named
    ours = [line for line in err.splitlines() if line.startswith("dptrain:")]
    assert ours == ["dptrain: rank 1 failed at step 3: InjectedFault: injected failure on rank 1 "
                    "at step 3 (--debug shows the traceback)"], err
    assert "Traceback" not in err


def test_debug_shows_one_traceback_before_the_line():
    code, err, _ = finish(start(LONG_RUN + ["--debug"], fault="raise:1:3"), timeout=60)
    assert code == 3, err
    assert err.count("Traceback (most recent call last)") == 1, err
    assert err.index("Traceback") < err.index("dptrain: rank 1 failed at step 3: InjectedFault")


def in_main(pid: int) -> bool:
    """numpy is mapped: the rank has entered dptrain's main (which imports it), so it is past
    the interpreter's own start-up, where Ctrl-C is Python's business, not dptrain's."""
    try:
        return "numpy" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


def test_interrupt_during_start_up_is_reported_once(tmp_path):
    marker = "7919"                                  # a seed that names this job's ranks
    proc = start(LONG_RUN + ["--dataset", "synthetic:1x28x28:300000", "--seed", marker])
    deadline = time.time() + 60
    while time.time() < deadline and not (len(pids := rank_pids(marker, proc.pid)) == 2
                                          and all(in_main(p) for p in pids)):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)               # as Ctrl-C does: every process
    code, err, _ = finish(proc, timeout=60)
    assert code != 0
    assert err.count("dptrain: interrupted") == 1, err


def test_stalled_collective_is_ended_by_the_watchdog():
    code, err, took = finish(start(LONG_RUN + ["--comm-timeout", 3], fault="stall:1:4"), timeout=60)
    assert code == 3, err
    # whichever rank's watchdog fires first names the operation, its bucket and step: the
    # waiting rank's collective of step 4, or the stalled rank's own reduction of step 3
    assert re.search(r"rank [01]: (allreduce of bucket \d+ \(\d+ bytes\)|batch-norm allreduce|"
                     r"allreduce of the step metrics) at step [34] did not complete within 3 s "
                     r"\(--comm-timeout 3\); ", err), err


def test_replica_divergence_is_caught():
    code, err, _ = finish(start(LONG_RUN + ["--check-replicas", 1], fault="perturb:1:2"), timeout=60)
    assert code == 3, err
    assert err.strip().splitlines() == ["dptrain: training failed: replicas diverged at step 3: "
                                        "ranks [1] differ from rank 0 (--check-replicas)"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_after_the_run_completed_leaves_exit_0(tmp_path, sig):
    """Rank 0 is kept 4 s past the final barrier (its weights written, every rank done): a
    signal to every rank then has nothing left to stop. It used to end rank 0 with exit 143
    (the handler raised), or, later in the interpreter's shutdown, kill it (mpiexec: bad
    termination), a completed run reported as a failed one."""
    weights = tmp_path / "w.npz"
    code, err = signal_when_paused(["--save-weights", weights], "pause:0:exit:4",
                                   lambda pids: pids, sig)
    assert code == 0, err
    assert "interrupted" not in err and "BAD TERMINATION" not in err, err
    assert weights.exists()


def test_a_signal_while_waiting_for_a_slower_rank_at_the_end_leaves_exit_0(tmp_path):
    """Rank 0 held 6 s after its last step (past the watcher's 4 s grace): rank 1, its run
    complete, waits for it in the final barrier, where SIGTERM finds it blocked in MPI. The
    barrier is bounded, so the first signal is waited out, as in a step's collective."""
    def rank_1(pids):
        time.sleep(1.0)                       # into the barrier
        return [pid for pid in pids if b"PMI_RANK=1\0" in Path(f"/proc/{pid}/environ").read_bytes()]
    code, err = signal_when_paused([], "pause:0:end:6", rank_1, signal.SIGTERM)
    assert code == 0, err
    assert "interrupted" not in err, err


def said_paused(proc, fault: str) -> list[str]:
    """The job's stderr lines up to the one in which ``fault`` (pause:RANK:PHASE[:SECONDS])
    says its rank is there."""
    _, rank, phase, *_ = fault.split(":")
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if f"rank {rank} paused at {phase}" in line:
            return seen
    pytest.fail(f"rank {rank} never said it paused: " + "".join(seen))


def signal_when_paused(args, fault, targets, sig):
    """A short 2-rank run with ``fault`` (pause:RANK:PHASE:SECONDS): once the paused rank says
    it is there, ``sig`` goes to ``targets(the ranks' pids)``. (exit code, stderr)."""
    marker = "synthetic:1x8x8:256"
    proc = start(["train", "--model", "mlp", "--dataset", marker, "--quiet", "--max-steps", 4,
                  *args], fault=fault)
    seen = []
    try:
        seen = said_paused(proc, fault)
        chosen = targets(rank_pids(marker, proc.pid))
        assert chosen, "no rank to signal"
        for pid in chosen:
            os.kill(pid, sig)
        code, err, _ = finish(proc, timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return code, "".join(seen) + err


def test_sigquit_prints_where_each_rank_is_and_the_run_goes_on():
    """kill -QUIT to the ranks while rank 1 is held in the start-up: each prints every
    thread's stack (rank 0 waits in the start-up agreement, rank 1 is in the fault's pause),
    and the run then ends normally."""
    def both(pids):
        time.sleep(0.5)                       # rank 0 into the agreement
        return pids
    code, err = signal_when_paused([], "pause:1:setup:4", both, signal.SIGQUIT)
    assert code == 0, err
    # rank 1 is certainly in its pause; rank 0 in the agreement unless a loaded machine
    # still has it reading its data: any stack of its own will do
    assert err.count("Current thread") == 2 and "in at_phase" in err, err


def test_a_hung_job_is_reported_with_where_its_ranks_were():
    """The tests' own finish(): past its timeout it asks the ranks for their stacks first."""
    proc = start(["train", "--model", "mlp", "--dataset", "synthetic:1x8x8:258", "--quiet",
                  "--max-steps", 4], fault="pause:1:setup:60")
    said_paused(proc, "pause:1:setup:60")    # rank 1 past MPI_Init, so rank 0 too: both
                                             # have their SIGQUIT handler
    with pytest.raises(pytest.fail.Exception) as failed:
        finish(proc, timeout=3)
    assert "it hung; where its ranks were" in str(failed.value)
    assert str(failed.value).count("Current thread") == 2 and "in at_phase" in str(failed.value)


def test_sigterm_checkpoints_and_exits_cleanly_then_resumes(tmp_path):
    d = tmp_path / "ck"
    proc = start(LONG_RUN + ["--checkpoint-dir", d, "--checkpoint-every", 7])
    wait_for_checkpoints(d)                                   # training is under way
    os.killpg(proc.pid, signal.SIGTERM)                       # as Slurm does: every process
    code, err, took = finish(proc, timeout=60)
    assert code == 0, err
    assert "stopped by a signal after step" in err and "checkpoint written" in err
    step = int(err.split("after step ")[1].split(";")[0])
    last = checkpoint.list_checkpoints(d)[-1]
    assert checkpoint.read(last)["meta"]["step"] == step
    args = RUN + ["--epochs", 100, "--max-steps", step + 2, "--checkpoint-dir", d,
                  "--checkpoint-every", 7, "--resume"]
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "dptrain.cli", *map(str, args)],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert checkpoint.read(checkpoint.list_checkpoints(d)[-1])["meta"]["step"] == step + 2
