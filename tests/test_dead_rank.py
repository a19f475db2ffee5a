"""A dead rank found in seconds (--comm-timeout auto:FLOOR): a rank asleep in its own work or
frozen by SIGSTOP, in a step or in a checkpoint, ends the job with exit 3 soon after the
floor, the message naming it; the checkpoint written before stays intact and resumable; a
slow step, a slow checkpoint and a pause of the whole job are survived, the pause with the
parameters of an undisturbed run."""
import os
import signal
import time

import numpy as np
import pytest

from dptrain.train import checkpoint
from test_faults import finish, rank_pids, start
from test_pauses import send, wait_for_lines

FLOOR = 3
# blocking: a rank asleep between steps has no reduction of its own pending, so only the
# ranks waiting for it give up, and each names it
ARGS = ["train", "--model", "mlp", "--dataset", "synthetic:1x8x8:2000", "--batch-size", 16,
        "--threads", 1, "--quiet", "--sync", "blocking", "--comm-timeout", f"auto:{FLOOR}"]


def ended_since_last_line(metrics, proc_timeout=90, proc=None):
    """(exit code, stderr, seconds from the last metrics line to the job's end)."""
    code, err, _ = finish(proc, timeout=proc_timeout)
    return code, err, time.time() - metrics.stat().st_mtime


def kill_leftovers(marker, timeout=20):
    """End and wait out the job's ranks (an aborted rank may outlive mpiexec a moment, holding
    the checkpoint directory's lock)."""
    deadline = time.time() + timeout
    while rank_pids(marker) and time.time() < deadline:
        for pid in rank_pids(marker):
            send(pid, signal.SIGKILL)
        time.sleep(0.1)


def test_a_rank_asleep_in_its_step_is_named_and_the_checkpoint_resumes(tmp_path):
    d, metrics = tmp_path / "ck", tmp_path / "m.jsonl"
    run = ARGS + ["--max-steps", 60, "--checkpoint-dir", d, "--checkpoint-every", 10]
    proc = start(run + ["--metrics-out", metrics, "--log-every", 1], fault="stall:1:40")
    try:
        code, err, late = ended_since_last_line(metrics, proc=proc)
    finally:
        kill_leftovers(str(d))
    assert code == 3, err
    assert late < FLOOR + 15, f"the job ended {late:.1f} s after its last step"
    assert f"floor {FLOOR} s); ranks that did not answer: 1 (alive, but at step 40 " in err, err
    assert [p.name for p in checkpoint.list_checkpoints(d)][-1] == "ckpt-000000040.npz"
    checkpoint.read(checkpoint.list_checkpoints(d)[-1])
    # at once: the aborted rank 0 may linger as a zombie, which no longer holds the lock
    code, err, _ = finish(start(run + ["--resume"]), timeout=90)
    assert code == 0, err


# overlap-fc with every layer replicated: no bucket at all, only the layers' gathers to wait in
@pytest.mark.parametrize("n,sync", [(2, ["blocking"]), (4, ["blocking"]),
                                    (2, ["overlap-fc", "--fc-replicate", "all"])],
                         ids=["2-blocking", "4-blocking", "2-overlap-fc"])
def test_a_rank_frozen_by_sigstop_is_named(tmp_path, n, sync):
    metrics = tmp_path / "m.jsonl"
    args = ARGS[:ARGS.index("--sync") + 1] + sync + ARGS[ARGS.index("--sync") + 2:]
    proc = start(args + ["--max-steps", 500, "--metrics-out", metrics, "--log-every", 1],
                 fault=f"stop:{n - 1}:40", n=n)
    try:
        code, err, late = ended_since_last_line(metrics, proc=proc)
    finally:
        kill_leftovers(str(metrics))
    assert code == 3, err
    assert late < FLOOR + 15, f"the job ended {late:.1f} s after its last step"
    assert f"ranks that did not answer: {n - 1} (no heartbeat for " in err, err


def test_a_rank_frozen_during_a_checkpoint_is_found_as_fast_as_during_a_step(tmp_path):
    """Rank 1 frozen before the agreement that follows rank 0's write: that phase's own limit
    is 300 s (a slow disk), but a silent rank gets the step limit in every phase."""
    d = tmp_path / "ck"
    run = ARGS + ["--max-steps", 60, "--checkpoint-dir", d, "--checkpoint-every", 20]
    t0 = time.time()
    proc = start(run, fault="stop:1:checkpoint")
    try:
        code, err, _ = finish(proc, timeout=90)
    finally:
        kill_leftovers(str(d))
    assert code == 3, err
    took = time.time() - t0
    assert took < FLOOR + 30, f"the job ended {took:.1f} s after it started"
    assert ("agreement after the checkpoint of step 20 did not complete within "
            f"{FLOOR} s (--comm-timeout auto: 20 x slowest step") in err, err
    assert "the limit of any collective while a rank is silent; --comm-timeout auto: 300 s for " \
           "checkpoint writing otherwise); ranks that did not answer: 1 (no heartbeat for " in err
    assert [p.name for p in checkpoint.list_checkpoints(d)] == ["ckpt-000000020.npz"]
    code, err, _ = finish(start(run + ["--resume"]), timeout=90)
    assert code == 0, err


def test_a_slow_but_live_rank_in_a_checkpoint_is_waited_for(tmp_path):
    """Rank 1 kept 2 x the floor before the agreement, alive (its heartbeat beats): the
    checkpoint phase's own limit holds, the run ends normally."""
    d = tmp_path / "ck"
    run = ARGS + ["--max-steps", 30, "--checkpoint-dir", d, "--checkpoint-every", 20]
    code, err, _ = finish(start(run, fault=f"pause:1:checkpoint:{2 * FLOOR}"), timeout=120)
    assert code == 0, err


def test_a_slow_step_is_not_a_dead_rank(tmp_path):
    """slow:1:20 sleeps 2 s, under the floor: a live rank, however slow, is waited for."""
    code, err, _ = finish(start(ARGS + ["--max-steps", 30], fault="slow:1:20"), timeout=90)
    assert code == 0, err


def test_a_pause_of_the_whole_job_longer_than_the_floor_is_not_a_death(tmp_path):
    run = ARGS[:-1] + ["auto:2", "--max-steps", 1500]
    reference, weights, metrics = tmp_path / "r.npz", tmp_path / "w.npz", tmp_path / "m.jsonl"
    code, err, _ = finish(start(run + ["--save-weights", reference]), timeout=120)
    assert code == 0, err
    proc = start(run + ["--save-weights", weights, "--metrics-out", metrics, "--log-every", 1])
    try:
        wait_for_lines(metrics, 50)
        first, last = rank_pids(str(metrics))
        send(last, signal.SIGSTOP)                 # a suspend reaches the ranks one by one
        time.sleep(0.5)
        send(first, signal.SIGSTOP)
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(5)                              # well past the 2 s floor
        send(first, signal.SIGCONT)
        time.sleep(0.5)
        send(last, signal.SIGCONT)
        os.killpg(proc.pid, signal.SIGCONT)
        code, err, _ = finish(proc, timeout=120)
    finally:
        kill_leftovers(str(metrics))
    assert code == 0, err
    with np.load(reference) as a, np.load(weights) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
