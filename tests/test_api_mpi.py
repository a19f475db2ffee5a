"""dptrain.fit in a script under mpiexec on two ranks, as the command behaves there: arrays that
differ between ranks are exit 2 on every rank before training, a failure on one rank ends
the whole job with exit 3 at once, so does a stalled rank after comm_timeout, SIGTERM stops
every rank after the step and fit returns with `stopped`, a second fit()
after MPI was finalized is exit 2, and the collective-order check runs when
$DPTRAIN_CHECK_COLLECTIVES asks for it."""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
DEADLINE_S = 60
REPORT_EXIT = 'python_rc=$?; echo "rank ${PMI_RANK:-0} exit $python_rc"; exit $python_rc'

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import dptrain

    rank = int(os.environ.get("PMI_RANK", 0))
    rng = np.random.default_rng(11)
    x = rng.random((128, 1, 6, 6), dtype=np.float32)
    y = np.arange(128) % 4
    if "--rank-dependent" in sys.argv and rank == 1:
        x[5, 0, 0, 0] += 0.5                     # one pixel differs on rank 1
    timeout = float(sys.argv[sys.argv.index("--timeout") + 1]) if "--timeout" in sys.argv else 30
    options = dict(batch_size=16, max_steps=6, quiet=True, comm_timeout=timeout,
                   metrics_out="m.jsonl" if "--metrics" in sys.argv else None)
    if "--long" in sys.argv:
        options.update(max_steps=100000, checkpoint_dir="ck", checkpoint_every=7)
    if "--retry" in sys.argv:
        try:
            dptrain.fit(model="mlp", dataset=(x, y), **dict(options, batch_size=0))
        except dptrain.JobEnded as ended:
            print(f"rank {rank} caught {ended.code}", flush=True)
    result = dptrain.fit(model="mlp", dataset=(x, y), **options)
    with open(f"result-{result.rank}.json", "w") as f:
        json.dump({"ranks": result.ranks, "step": result.step, "stopped": result.stopped,
                   "checkpoint": result.checkpoint, **result.metrics}, f)
    if "--twice" in sys.argv:
        dptrain.fit(model="mlp", dataset=(x, y), **options)
""")


def job(tmp_path, *args, env=None):
    """(returncode, stdout lines, stderr lines) of the script on two ranks."""
    (tmp_path / "script.py").write_text(SCRIPT)
    shell = f'"{sys.executable}" script.py {" ".join(map(str, args))}; {REPORT_EXIT}'
    proc = subprocess.Popen([MPIEXEC, "-n", "2", "sh", "-c", shell], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env=dict(os.environ, **(env or {})))
    try:
        out, err = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the job still ran after {DEADLINE_S} s: it hung")
    return proc.returncode, out.strip().splitlines(), err.strip().splitlines()


def exits(out):
    """Each rank's "rank R exit C" (found anywhere: the launcher may join ranks' lines)."""
    return sorted(re.findall(r"rank \d+ exit \d+", "\n".join(out)))


def test_two_ranks_train_and_check_their_collectives(tmp_path):
    code, out, err = job(tmp_path, "--metrics", env={"DPTRAIN_CHECK_COLLECTIVES": "strict"})
    assert code == 0, (out, err)
    assert exits(out) == ["rank 0 exit 0", "rank 1 exit 0"], out
    results = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in (0, 1)]
    assert results[0] == results[1] and results[0]["ranks"] == 2 and results[0]["step"] == 6
    run = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert run["ranks"] == 2 and run["config"]["check_collectives"] == "strict"


def test_rank_dependent_arrays_are_exit_2_on_every_rank(tmp_path):
    code, out, err = job(tmp_path, "--rank-dependent")
    assert code == 2, (out, err)
    assert exits(out) == ["rank 0 exit 2", "rank 1 exit 2"], out
    assert len(err) == 1 and err[0].startswith(
        "dptrain: error: ranks disagree on the content of the training images of arrays:default"), err


def test_a_failure_on_one_rank_ends_the_job_with_exit_3(tmp_path):
    code, out, err = job(tmp_path, env={"DPTRAIN_FAULT": "raise:1:2"})
    assert code == 3, (out, err)
    assert not list(tmp_path.glob("result-*.json")), out             # no rank returned
    assert any(line.startswith("dptrain: rank 1 failed at step 2:") for line in err), err
    assert not any("Traceback" in line for line in err), err


def test_a_second_fit_after_mpi_finalized_is_exit_2(tmp_path):
    code, out, err = job(tmp_path, "--twice")
    assert code == 2, (out, err)
    assert exits(out) == ["rank 0 exit 2", "rank 1 exit 2"], out
    assert err == ["dptrain: error: fit(): MPI was finalized by an earlier fit() in this process; "
                   "under mpiexec a process trains once (start one job per run)"], err


def test_a_stalled_rank_is_ended_by_the_watchdog(tmp_path):
    """comm_timeout= is --comm-timeout: the rank waiting for a stalled peer ends the job."""
    code, out, err = job(tmp_path, "--timeout", 2, env={"DPTRAIN_FAULT": "stall:1:3"})
    assert code == 3, (out, err)
    assert any(re.search(r"rank [01]: .* at step [23] did not complete within 2 s "
                         r"\(--comm-timeout 2\)", line) for line in err), err


def test_sigterm_stops_every_rank_after_the_step_and_fit_returns(tmp_path):
    """As a scheduler's time limit does: SIGTERM to every process; the step finishes, the
    checkpoint is written, and fit returns on every rank with ``stopped`` saying so."""
    (tmp_path / "script.py").write_text(SCRIPT)
    proc = subprocess.Popen([MPIEXEC, "-n", "2", sys.executable, "script.py", "--long"],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.time() + DEADLINE_S
    while time.time() < deadline and not list((tmp_path / "ck").glob("ckpt-*.npz")):
        time.sleep(0.05)                                       # training is under way
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        _, err = proc.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail("the job did not stop after SIGTERM")
    assert proc.returncode == 0, err
    results = [json.loads((tmp_path / f"result-{r}.json").read_text()) for r in (0, 1)]
    assert results[0]["step"] == results[1]["step"] < 100000, results
    step = results[0]["step"]
    for r in results:
        assert r["stopped"] == f"dptrain: stopped by a signal after step {step}; checkpoint written"
        assert r["checkpoint"] == f"ck/ckpt-{step:09d}.npz"
    assert err.count("dptrain: stopped by a signal") == 1, err


def test_a_script_may_catch_exit_2_and_fit_again(tmp_path):
    code, out, err = job(tmp_path, "--retry")
    assert code == 0, (out, err)
    assert sorted(re.findall(r"rank \d caught \d", "\n".join(out))) == \
        ["rank 0 caught 2", "rank 1 caught 2"], out
    assert err == ["dptrain: error: --batch-size must be positive, got 0"], err
    assert [json.loads((tmp_path / f"result-{r}.json").read_text())["step"] for r in (0, 1)] == [6, 6]
