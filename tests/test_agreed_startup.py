"""Agreed start-up under mpiexec: outputs are checked before training on every rank, a refusal
ends every rank with exit 2 and one line, and an error one rank finds later ends the job at
once (not after --comm-timeout)."""
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
DEADLINE_S = 10


def job_within(deadline, cmd, env=None, cwd=None):
    """Run the launcher command ``cmd`` in a session of its own: (returncode, stderr lines,
    seconds); kills the whole job and fails the test when it outlives ``deadline``."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})), cwd=cwd, start_new_session=True)
    t0 = time.time()
    try:
        _, err = proc.communicate(timeout=deadline)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the job was still running after {deadline} s: it hung")
    return proc.returncode, err.strip().splitlines(), time.time() - t0


def mpirun_within(deadline, n, *args, env=None):
    """(returncode, stderr lines, seconds); fails the test when the job outlives ``deadline``."""
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "dptrain.cli", *map(str, args)]
    return job_within(deadline, cmd, env=env)


@pytest.fixture
def small_npz(tmp_path):
    path = tmp_path / "ok.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((64, 1, 8, 8), dtype=np.float32), y=np.arange(64) % 4)
    return path


def train_args(npz, *extra):
    # a long --comm-timeout: only the agreed start-up can end these jobs within the deadline
    return ["train", "--model", "mlp", "--dataset", f"npz:{npz}", "--batch-size", 16,
            "--max-steps", 3, "--quiet", "--comm-timeout", 300, *extra]


@pytest.mark.parametrize("flag,target,named", [
    ("--metrics-out", "a_directory", "is a directory"),
    ("--save-weights", "a_directory", "is a directory"),
    ("--trace", "missing/t.json", "does not exist"),
    ("--checkpoint-dir", "a_file", "not a directory"),
])
def test_unwritable_output_on_two_ranks_ends_within_deadline(tmp_path, small_npz, flag, target, named):
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "a_file").write_text("x")
    code, lines, _ = mpirun_within(DEADLINE_S, 2, *train_args(small_npz, flag, tmp_path / target))
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"dptrain: error: {flag}") and named in lines[0], lines


def test_bad_input_one_rank_finds_during_training_ends_the_job_at_once(small_npz):
    code, lines, _ = mpirun_within(DEADLINE_S, 2, *train_args(small_npz),
                                   env={"DPTRAIN_FAULT": "usage:1:1"})
    assert code == 2, lines
    assert "dptrain: error: rank 1: injected bad input on rank 1 at step 1" in lines, lines
    assert not any("Traceback" in line for line in lines), lines


def test_config_file_only_rank_0_can_read_is_agreed(tmp_path, small_npz):
    """Each rank reads its own file name (PMI_RANK is set by the launcher): rank 1's is missing."""
    (tmp_path / "c0.toml").write_text("epochs = 1\n")
    args = " ".join(map(str, train_args(small_npz)))
    cmd = [MPIEXEC, "-n", "2", "sh", "-c",
           f'exec {sys.executable} -m dptrain.cli {args} --config {tmp_path}/c$PMI_RANK.toml']
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2, lines
    assert len(lines) == 1 and lines[0].startswith("dptrain: error: rank 1: ") and "c1.toml" in lines[0], lines


@pytest.mark.parametrize("paused", [0, 1])
def test_sigterm_to_one_rank_during_start_up_ends_every_rank(tmp_path, paused):
    """Once a rank has MPI loaded (its signal handlers are in place), SIGTERM to that rank alone
    during the start-up ends the whole job with exit 143 and no traceback. Rank ``paused`` is
    kept in the start-up (after MPI started, before the agreement) for a minute, so the signal
    lands there however late this test sends it. Without the pause the whole run takes about
    2 s after MPI starts; in CI the signal came late, after the last step: the run had finished
    its work, so exit 0 and nothing said, as a SIGTERM 2.1 s after MPI started gives here. The
    target is either the paused rank or the other one, blocked in the agreement."""
    from test_faults import rank_pids
    marker = "synthetic:1x28x28:60000"
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "dptrain.cli", "train", "--model", "mlp",
           "--dataset", marker, "--quiet", "--checkpoint-dir", str(tmp_path / "ck")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,
                            env=dict(os.environ, DPTRAIN_FAULT=f"pause:{paused}:setup"))
    try:
        deadline = time.time() + 60
        target = None
        while time.time() < deadline and target is None:
            for pid in rank_pids(marker, proc.pid):
                try:
                    if "libmpi" in open(f"/proc/{pid}/maps").read():
                        target = pid
                except OSError:
                    pass
            time.sleep(0.05)
        assert target is not None, "no rank reached MPI_Init"
        os.kill(target, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    assert proc.returncode == 143, err
    # the signalled rank says so, with its rank unless it is rank 0
    assert re.search(r"dptrain: (rank \d+: )?interrupted by SIGTERM", err) and "Traceback" not in err, err
    assert not list((tmp_path / "ck").glob("ckpt-*"))
