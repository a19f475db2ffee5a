"""`dptrain train` started by mpiexec: agreed errors are reported once, and a demo-sized run works."""
import json
import re
import os
import subprocess
import sys

import pytest

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")


def mpirun(n, *args, timeout=300):
    cmd = [MPIEXEC, "-n", str(n), sys.executable, "-m", "dptrain.cli", *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def test_bad_flag_on_two_ranks_one_line_exit_2():
    res = mpirun(2, "train", "--batch-size", "0")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines == ["dptrain: error: --batch-size must be positive, got 0"], res.stderr


def test_missing_data_on_two_ranks_one_line_exit_2(tmp_path):
    res = mpirun(2, "train", "--dataset", f"mnist:{tmp_path / 'none'}")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "none: no such directory" in lines[0], res.stderr


def test_batch_smaller_than_ranks():
    res = mpirun(2, "train", "--batch-size", "1", "--dataset", "synthetic")
    assert res.returncode == 2 and "smaller than the 2 ranks" in res.stderr


def test_diverging_run_on_two_ranks_exits_3_once():
    res = mpirun(2, "train", "--model", "mlp", "--dataset", "synthetic:1x8x8:200", "--optimizer",
                 "sgd", "--lr", "1e30", "--quiet")
    assert res.returncode == 3
    lines = res.stderr.strip().splitlines()
    # the loss or, first, the reduced gradient: either way once, with the step
    assert len(lines) == 1 and re.fullmatch(r"dptrain: training failed: (loss became \S+|non-finite "
                                            r"gradient .*) at step \d+", lines[0]), res.stderr


def test_two_rank_training_rank_zero_writes(tmp_path):
    metrics = tmp_path / "m.jsonl"
    res = mpirun(2, "train", "--model", "mlp", "--dataset", "synthetic:1x8x8:400", "--epochs", 2,
                 "--batch-size", 30, "--eval-train", "--metrics-out", metrics)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("test accuracy:") == 1            # rank 0 alone prints
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert len(lines) == 7                 # one writer, no duplicates: a run line, 3 per epoch
    assert lines[-2]["split"] == "test" and lines[-2]["samples"] == 80
    assert lines[-1]["split"] == "train" and lines[-1]["samples"] == 320


def test_scaling_bench_smoke():
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "bench", "--ranks", "1,2", "--model",
                          "mlp", "--steps", "3", "--warmup", "1", "--rounds", "1", "--no-torch",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["torch"] == [] and report["torch_skipped"] == "--no-torch"   # said, not silent
    rows = report["rows"]
    assert [(r["ranks"], r["sync"]) for r in rows] == [
        (1, "single"), (2, "independent"), (2, "blocking"), (2, "overlap"), (2, "overlap"),
        (2, "auto")]
    two = [r for r in rows if r["sync"] in ("blocking", "overlap")]
    assert all(r["bytes_per_step"] == 4 * 269_322 and r["efficiency"] > 0 for r in two)
    assert rows[1]["bytes_per_step"] == 0


def test_predict_smoke():
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "bench", "--predict", "--model", "mlp",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert {r["ranks"] for r in rows} == {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}
    one = [r for r in rows if r["ranks"] == 1 and r["schedule"] == "blocking"][0]
    assert one["speedup"] == 1 and one["comm_ms"] == 0
    lee = subprocess.run([sys.executable, "-m", "dptrain.cli", "bench", "--predict", "--lee", "--json"],
                         capture_output=True, text=True, timeout=300)
    assert lee.returncode == 0, lee.stderr
    cases = json.loads(lee.stdout)["cases"]
    assert [c["reported_speedup_128"] for c in cases] == [62.97, 77.97]
    assert all(1 < c["predicted_speedup_128"]["overlap"] <= 128 for c in cases)


def test_overlap_bench_smoke():
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "bench", "--ranks", "2", "--model", "mlp",
                          "--net-emulate", "bw=1Gbit", "--schedules",
                          "blocking,overlap,overlap-fc,overlap@0.05,auto",
                          "--steps", "3", "--warmup", "1", "--rounds", "1", "--bucket-mb", "0.1",
                          "--json"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)["rows"]
    assert [r["sync"] for r in rows] == ["independent", "blocking", "overlap", "overlap-fc",
                                         "overlap", "auto"]
    assert [r["bucket_mb"] for r in rows[2:]] == [None, None, 0.05, "auto"]
    auto = rows[-1]
    assert auto["auto"]["sync"] in ("blocking", "overlap", "overlap-fc") and auto["auto"]["buckets"]
    assert auto["step_vs_best_hand_set"] > 0
    assert all(r["net"] == "bw=1Gbit" for r in rows)
    overlap = rows[2]
    assert "hidden_fraction" in overlap and 0 <= overlap["dependency_bound"] <= 1
    assert rows[3]["bytes_per_step"] < rows[1]["bytes_per_step"]        # mlp: FC layers gathered


def _test_loss(ranks, tmp_path, *flags):
    metrics = tmp_path / f"m{ranks}{''.join(flags)}.jsonl"
    res = mpirun(ranks, "train", "--model", "thesis-cnn", "--dataset", "synthetic:1x28x28:400",
                 "--dtype", "float64", "--batch-size", 32, "--max-steps", 6, "--quiet",
                 "--metrics-out", metrics, *flags)
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    return next(r["loss"] for r in lines if r["type"] == "eval")


def test_defaults_give_the_same_result_on_one_and_two_ranks(tmp_path):
    """BatchNorm statistics over the global batch by default (--sync-bn), so the promise of
    docs/guarantees.md holds without asking; --no-sync-bn gives it up, as documented."""
    one = _test_loss(1, tmp_path)
    assert _test_loss(2, tmp_path) == pytest.approx(one, rel=1e-10)
    assert _test_loss(2, tmp_path, "--no-sync-bn") != pytest.approx(one, rel=1e-6)
