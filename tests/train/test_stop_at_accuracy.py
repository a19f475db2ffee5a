"""--stop-at-accuracy A ends the run after the first evaluated epoch whose test accuracy is at
least A, as a normal end does: the final checkpoint, --save-weights, the result of that epoch."""
import json
import subprocess
import sys

import pytest

from dptrain.errors import UsageError
from dptrain.train import TrainConfig, Trainer

COMMON = dict(model="mlp", dataset="synthetic:1x8x8:200", batch_size=20, quiet=True, epochs=6)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_run_ends_after_the_first_epoch_that_reaches_the_target(tmp_path):
    metrics, weights = tmp_path / "m.jsonl", tmp_path / "w.npz"
    result = Trainer(TrainConfig(**COMMON, stop_at_accuracy=1e-9, metrics_out=str(metrics),
                                 save_weights=str(weights), checkpoint_dir=str(tmp_path / "ck"),
                                 checkpoint_every="0")).run()
    steps_per_epoch = 160 // 20                 # a fifth of 200 is held out as the test split
    assert result["epochs"] == 1 and result["steps"] == steps_per_epoch
    assert result["test_accuracy"] >= 1e-9
    evals = [r for r in lines(metrics) if r["type"] == "eval"]
    assert [(r["epoch"], r["split"]) for r in evals] == [(1, "test")]
    assert evals[0]["time_s"] >= 0
    assert weights.exists()                              # as at a normal end
    assert len(list((tmp_path / "ck").glob("*"))) >= 1   # the end-of-run checkpoint ("0")


def test_a_target_never_reached_runs_every_epoch(tmp_path):
    result = Trainer(TrainConfig(**{**COMMON, "epochs": 2}, stop_at_accuracy=1.0, lr=1e-9)).run()
    assert result["epochs"] == 2 and result["test_accuracy"] < 1.0


@pytest.mark.parametrize("extra, message", [
    (dict(stop_at_accuracy=1.5), "--stop-at-accuracy"),
    (dict(stop_at_accuracy=0.0), "--stop-at-accuracy"),
    (dict(stop_at_accuracy=0.5, eval_every=0), "--eval-every 0"),
])
def test_bad_targets_are_refused(extra, message):
    with pytest.raises(UsageError, match=message):
        TrainConfig(**COMMON, **extra).validate()


def test_the_flag_exits_0_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dptrain", "train", *"--model mlp --dataset "
                          "synthetic:1x8x8:200 --batch-size 20 --epochs 6 --stop-at-accuracy "
                          "0.000001".split()], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "stopping: test accuracy" in out.stdout and "after epoch 1 " in out.stdout
