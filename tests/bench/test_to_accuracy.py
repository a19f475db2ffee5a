"""`dptrain bench --to-accuracy`: both frameworks stop at the first evaluation that reaches
the target, the rows carry what docs/performance.md reports, the ratio is dptrain's time over
DDP's; without PyTorch, one line says so and dptrain runs alone; the torch mirror starts from
dptrain's initial weights; a run past its deadline is killed with its children."""
import json
import os
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from dptrain.bench.watched_run import run_watched

N_TRAIN, N_TEST, BATCH = 200, 60, 20


def write_idx(path, arr):
    arr = np.asarray(arr, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape))
        f.write(arr.tobytes())


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """Tiny IDX 'digits' a CNN learns in an epoch: class k is a bright square at place k."""
    d = tmp_path_factory.mktemp("digits")
    rng = np.random.default_rng(0)
    for prefix, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 60, (n, 28, 28))
        for i, k in enumerate(labels):
            r, c = 2 + 12 * (k // 5), 2 + 5 * (k % 5)
            images[i, r:r + 10, c:c + 5] = 250
        write_idx(d / f"{prefix}-images-idx3-ubyte", images)
        write_idx(d / f"{prefix}-labels-idx1-ubyte", labels)
    return d


def bench(tmp_path, digits, *extra):
    out = tmp_path / "tta.json"
    cmd = [sys.executable, "-m", "dptrain", "bench", "--to-accuracy", "0.5", "--dataset",
           f"mnist:{digits}", "--batch-size", str(BATCH), "--max-epochs", "4",
           "--json-out", str(out), *(extra if "--rounds" in extra else [*extra, "--rounds", "1"])]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return run, (json.loads(out.read_text()) if out.exists() else None)


def check_row(row, framework, ranks):
    assert (row["framework"], row["ranks"]) == (framework, ranks) and "error" not in row, row
    assert row["reached"] and row["test_accuracy"] >= 0.5
    assert row["epochs"] < 4                                   # stopped, not run to the cap
    assert row["steps"] == round(row["epochs"] * (N_TRAIN // BATCH))
    assert 0 <= row["eval_s"] < row["time_to_target_s"] < row["process_s"]
    assert row["images_per_s"] > 0


def test_both_frameworks_stop_at_the_target_on_1_and_2_ranks(tmp_path, digits):
    pytest.importorskip("torch")
    run, report = bench(tmp_path, digits, "--ranks", "1,2", "--lr-schedule", "step",
                        "--lr-step-size", "3", "--lr-gamma", "0.5")
    assert run.returncode == 0, run.stderr
    rows = report["rows"]
    for row in rows:                              # both follow dptrain's schedule, step by step
        assert row["last_lr"] == 0.5 ** ((row["steps"] - 1) // 3)
    for row, (framework, ranks) in zip(rows, [("dptrain", 1), ("PyTorch DDP", 1),
                                               ("dptrain", 2), ("PyTorch DDP", 2)]):
        check_row(row, framework, ranks)
    assert len(rows) == 4
    for i, p in ((0, "1"), (2, "2")):
        assert report["dptrain_over_ddp"][p] == pytest.approx(
            rows[i]["time_to_target_s"] / rows[i + 1]["time_to_target_s"])
    table = run.stdout.splitlines()[2:]                     # after the title and the header
    assert sum(line.split()[1:3] in (["dptrain", "1"], ["dptrain", "2"], ["PyTorch", "DDP"])
               for line in table) == 4                    # round, framework, ranks, ...
    assert sum("dptrain / DDP time to target" in line for line in table) == 2


def test_rounds_alternate_the_order_and_end_with_the_ratio_of_medians(tmp_path, digits):
    pytest.importorskip("torch")
    run, report = bench(tmp_path, digits, "--rounds", "2")
    assert run.returncode == 0, run.stderr
    order = [(r["round"], r["framework"], r["seed"]) for r in report["rows"]]
    assert order == [(1, "dptrain", 0), (1, "PyTorch DDP", 0), (2, "PyTorch DDP", 1),
                     (2, "dptrain", 1)]
    median = {m["framework"]: m["time_to_target_s"] for m in report["medians"]}
    assert report["dptrain_over_ddp"]["1"] == pytest.approx(median["dptrain"] /
                                                            median["PyTorch DDP"])
    assert len(report["dptrain_over_ddp_per_round"]["1"]) == 2
    assert "dptrain / DDP time to target, medians" in run.stdout


def test_evaluations_every_n_steps_stop_both_frameworks_within_an_epoch(tmp_path, digits):
    """--eval-every-steps 3 (10 steps an epoch): each framework stops at the first of its
    evaluations that reaches the target, at a multiple of 3 or an epoch's end, and prints a
    line for each evaluation within an epoch."""
    pytest.importorskip("torch")
    run, report = bench(tmp_path, digits, "--eval-every-steps", "3")
    assert run.returncode == 0, run.stderr
    assert report["eval_every_steps"] == 3
    for row, framework in zip(report["rows"], ("dptrain", "PyTorch DDP")):
        check_row(row, framework, 1)
        assert row["steps"] % 3 == 0 or row["steps"] % (N_TRAIN // BATCH) == 0, row
    assert "  dptrain 1: eval step 3 epoch 1 " in run.stdout
    assert "  DDP 1: eval  step 3  epoch 1 " in run.stdout
    assert "and every 3 steps" in run.stdout.splitlines()[0]


def test_without_pytorch_one_line_says_so_and_dptrain_runs_alone(tmp_path, digits):
    run, report = bench(tmp_path, digits, "--no-torch")
    assert run.returncode == 0, run.stderr
    assert [line for line in run.stdout.splitlines() if "PyTorch DDP" in line] == [
        "PyTorch DDP: not measured: --no-torch"]
    assert len(report["rows"]) == 1 and report["dptrain_over_ddp"] == {}
    check_row(report["rows"][0], "dptrain", 1)


@pytest.mark.parametrize("flags, message", [
    (["--to-accuracy", "1.5"], "--to-accuracy must be in (0, 1]"),
    (["--to-accuracy", "0.9", "--dataset", "mnist:/no/such/dir"], "--dataset mnist:/no/such"),
    (["--to-accuracy", "0.9", "--ranks", "1,x"], "--ranks '1,x'"),
    (["--to-accuracy", "0.9", "--launcher", "mpiexec"], "leave out --launcher"),
])
def test_bad_input_is_exit_2_before_any_run(flags, message):
    run = subprocess.run([sys.executable, "-m", "dptrain", "bench", *flags], capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 2 and message in run.stderr and run.stdout == ""


def test_the_torch_mirror_starts_from_dptrains_weights(digits):
    torch = pytest.importorskip("torch")
    from dptrain import backend, data, models
    from dptrain.bench.torch_tta import starting_point

    class A:
        model, dataset, seed = "thesis-cnn", f"mnist:{digits}", 3
    ds, mirror = starting_point(A)
    backend.set_dtype("float32")
    ours = models.get("thesis-cnn", ds.input_shape, ds.num_classes, seed=3)
    x = np.asarray(ds.x_test[:8])
    theirs = mirror.eval()(torch.from_numpy(x)).detach().numpy()
    np.testing.assert_allclose(np.asarray(ours.forward(x, train=False)), theirs, atol=1e-4)


def test_a_run_past_its_deadline_is_killed_with_its_children():
    t0 = time.perf_counter()
    run = run_watched(["sh", "-c", "sleep 60 & echo $!; wait"], dict(os.environ), 1.0)
    assert run.timed_out and time.perf_counter() - t0 < 30
    child = int(run.stdout[0])
    time.sleep(0.2)
    try:                           # gone, or dead and waiting for init to reap it
        with open(f"/proc/{child}/stat") as f:
            assert f.read().rsplit(")", 1)[1].split()[0] in "ZX"
    except FileNotFoundError:
        pass
