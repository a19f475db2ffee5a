"""examples/train_mine.py, the example of docs/api.md, run as a user runs it: as a script on one
rank and under mpiexec on two. Its metrics, checkpoints and weights are checked, two ranks
against one, a resume, and a bad option: one line, exit 2 on every rank, nothing written."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "train_mine.py"
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
DEADLINE_S = 120
# what each rank prints on exit (PMI_RANK: MPICH's launcher sets it)
REPORT_EXIT = 'python_rc=$?; echo "rank ${PMI_RANK:-0} exit $python_rc"; exit $python_rc'


def run(cmd, cwd):
    """(returncode, stdout, stderr lines) of a job in its own session, killed if it hangs."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=cwd, start_new_session=True,
                            env=dict(os.environ, DPTRAIN_CHECK_COLLECTIVES="strict"))
    try:
        out, err = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"{cmd} still ran after {DEADLINE_S} s: it hung")
    return proc.returncode, out, err.strip().splitlines()


def example(ranks, cwd, *args):
    """The example on ``ranks`` ranks, every rank reporting its own exit code on stdout."""
    script = f'"{sys.executable}" "{EXAMPLE}" {" ".join(map(str, args))}; {REPORT_EXIT}'
    if ranks == 1:
        return run(["sh", "-c", script], cwd)
    if not os.path.exists(MPIEXEC):
        pytest.skip("no mpiexec beside the Python")
    return run([MPIEXEC, "-n", str(ranks), "sh", "-c", script], cwd)


def exits(out):
    """Each rank's "rank R exit C" (found anywhere: the launcher may join ranks' lines)."""
    return sorted(re.findall(r"rank \d+ exit \d+", out))


def records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


@pytest.fixture(scope="module")
def one_and_two_ranks(tmp_path_factory):
    """The example trained 20 steps on one rank and on two."""
    cwd = tmp_path_factory.mktemp("example")
    for ranks in (1, 2):
        code, out, err = example(ranks, cwd, "--out", f"r{ranks}", "--steps", 20)
        assert code == 0, (out, err)
        assert exits(out) == [f"rank {r} exit 0" for r in range(ranks)], out
        assert f"trained 20 steps on {ranks} rank(s)" in out, out
    return cwd


@pytest.mark.parametrize("ranks", [1, 2])
def test_example_writes_metrics_checkpoints_and_weights(one_and_two_ranks, ranks):
    out = one_and_two_ranks / f"r{ranks}"
    lines = records(out / "metrics.jsonl")
    run_line = lines[0]
    assert run_line["type"] == "run" and run_line["ranks"] == ranks
    assert run_line["config"]["model"] == f"{EXAMPLE}:build"       # the registered builder
    assert run_line["config"]["dataset"].startswith("arrays:")
    assert run_line["config"]["check_collectives"] == "strict"    # $DPTRAIN_CHECK_COLLECTIVES
    assert run_line["config"]["max_steps"] == 20 and run_line["config"]["optimizer"] == "adam"
    evals = [r for r in lines if r["type"] == "eval" and r["split"] == "test"]
    assert evals and evals[-1]["step"] == 20 and evals[-1]["samples"] == 120
    assert evals[-1]["accuracy"] > 0.5          # 4 classes: chance is 0.25
    names = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert names == ["ckpt-000000010.npz", "ckpt-000000020.npz"]
    assert (out / "weights.npz").is_file()


def test_two_ranks_train_what_one_does(one_and_two_ranks):
    w1 = np.load(one_and_two_ranks / "r1" / "weights.npz")
    w2 = np.load(one_and_two_ranks / "r2" / "weights.npz")
    assert sorted(w1.files) == sorted(w2.files) and w1.files
    for name in w1.files:               # float32: equal up to the order of the sums
        np.testing.assert_allclose(w2[name], w1[name], rtol=2e-3, atol=2e-4, err_msg=name)


def test_example_resumes_from_its_checkpoint(one_and_two_ranks):
    out = one_and_two_ranks / "r2"
    code, stdout, err = example(2, one_and_two_ranks, "--out", "r2", "--steps", 25, "--resume")
    assert code == 0, (stdout, err)
    assert "trained 25 steps on 2 rank(s)" in stdout, stdout
    last_run = [r for r in records(out / "metrics.jsonl") if r["type"] == "run"][-1]
    assert last_run["start_step"] == 20 and last_run["resumed_from"].endswith("ckpt-000000020.npz")
    assert (out / "checkpoints" / "ckpt-000000025.npz").is_file()


@pytest.mark.parametrize("ranks", [1, 2])
def test_bad_option_is_one_line_and_exit_2_on_every_rank(tmp_path, ranks):
    t0 = time.time()
    code, out, err = example(ranks, tmp_path, "--out", "bad", "--batch-size", 0)
    assert code == 2, (out, err)
    assert exits(out) == [f"rank {r} exit 2" for r in range(ranks)], out
    assert err == ["dptrain: error: --batch-size must be positive, got 0"], err
    assert not (tmp_path / "bad" / "metrics.jsonl").exists()
    assert time.time() - t0 < DEADLINE_S
