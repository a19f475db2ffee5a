"""A suspended job is not a failed one: SIGSTOP of every process of the job (Slurm suspend,
Ctrl-Z) for longer than --comm-timeout, then SIGCONT, and the run ends as if never paused.
A rank frozen alone is still a failure the others end (exit 3)."""
import os
import signal
import time

import numpy as np

from test_faults import finish, rank_pids, start

# A fixed schedule and bucket cap: under --sync auto two separate runs plan (and re-plan at
# step 200) from their own timings, which a pause or a loaded machine changes, and a plan of
# another schedule rounds differently (docs/guarantees.md); the weights are compared bitwise.
ARGS = ["train", "--model", "thesis-cnn", "--dataset", "synthetic:1x28x28:3000", "--batch-size", 32,
        "--threads", 1, "--quiet", "--comm-timeout", 3, "--sync", "overlap", "--bucket-mb", 1]


def wait_for_lines(path, n, timeout=90):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and len(path.read_text().splitlines()) >= n:
            return
        time.sleep(0.1)
    raise AssertionError(f"{path} never reached {n} lines: training did not get under way")


def send(pid, signum):
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass                      # it ended already: the exit code says why


def test_pausing_the_whole_job_longer_than_the_comm_timeout_is_not_a_failure(tmp_path):
    reference = tmp_path / "reference.npz"
    code, err, _ = finish(start(ARGS + ["--max-steps", 400, "--save-weights", reference]), timeout=120)
    assert code == 0, err
    metrics, weights = tmp_path / "m.jsonl", tmp_path / "w.npz"
    proc = start(ARGS + ["--max-steps", 400, "--save-weights", weights, "--metrics-out", metrics,
                         "--log-every", 1])
    wait_for_lines(metrics, 20)                       # some steps done: mid-training
    first, last = rank_pids(str(metrics))            # each rank in a session of its own
    # A suspend or resume reaches the ranks one after another: one stops first, so the other
    # is waiting for it in a collective (its deadline running) when it stops too...
    send(last, signal.SIGSTOP)
    time.sleep(0.5)
    send(first, signal.SIGSTOP)
    os.killpg(proc.pid, signal.SIGSTOP)               # mpiexec as well
    time.sleep(8)                                     # well past --comm-timeout 3
    send(first, signal.SIGCONT)                    # ...and it resumes first
    time.sleep(0.5)
    send(last, signal.SIGCONT)
    os.killpg(proc.pid, signal.SIGCONT)
    code, err, _ = finish(proc, timeout=120)
    assert code == 0, err
    with np.load(reference) as a, np.load(weights) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])


def test_a_rank_frozen_alone_still_ends_the_job(tmp_path):
    metrics = tmp_path / "m.jsonl"
    proc = start(ARGS + ["--epochs", 1000, "--metrics-out", metrics, "--log-every", 1])
    try:
        wait_for_lines(metrics, 4)
        pids = rank_pids(str(metrics))
        assert len(pids) == 2, pids
        os.kill(max(pids), signal.SIGSTOP)
        code, err, took = finish(proc, timeout=60)
    finally:
        for pid in rank_pids(str(metrics)):
            os.kill(pid, signal.SIGKILL)
    assert code == 3, err
    assert "did not complete within 3 s (--comm-timeout 3)" in err, err
