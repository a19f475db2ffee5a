"""--stop-at-accuracy A ends the run after the first evaluated epoch whose test accuracy is at
least A, as a normal end does: the final checkpoint, --save-weights, the result of that epoch."""
import json
import subprocess
import sys

import numpy as np
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
    (dict(eval_every_steps=-1), "--eval-every-steps"),
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


def test_a_target_reached_within_an_epoch_ends_the_run_there(tmp_path):
    """--eval-every-steps 3: the run stops after step 3 of an 8-step epoch, evaluates once
    there (the partial epoch's line reuses it), and ends as a normal end does."""
    metrics, weights = tmp_path / "m.jsonl", tmp_path / "w.npz"
    result = Trainer(TrainConfig(**COMMON, stop_at_accuracy=1e-9, eval_every_steps=3,
                                 metrics_out=str(metrics), save_weights=str(weights),
                                 checkpoint_dir=str(tmp_path / "ck"), checkpoint_every="0")).run()
    assert result["steps"] == 3 and result["epochs"] == 1
    records = lines(metrics)
    assert [(r["epoch"], r["step"]) for r in records if r["type"] == "eval"] == [(1, 3)]
    assert [(r["epoch"], r["step"]) for r in records if r["type"] == "epoch"] == [(1, 3)]
    assert weights.exists()
    assert [p.name for p in (tmp_path / "ck").glob("ckpt-*")] == ["ckpt-000000003.npz"]


def test_evaluations_within_epochs_come_every_n_steps_and_change_no_weight(tmp_path):
    """Every 3 steps and at each epoch's end (8 steps an epoch), once at a step where both
    fall (24); the training itself is the same to the bit as without them."""
    metrics = tmp_path / "m.jsonl"
    kw = dict(COMMON, epochs=3, model="thesis-cnn", dataset="synthetic:1x28x28:200",
              dtype="float64", optimizer="momentum")
    evaluated = Trainer(TrainConfig(**kw, eval_every_steps=3, metrics_out=str(metrics)))
    evaluated.run()
    steps = [r["step"] for r in lines(metrics) if r["type"] == "eval"]
    assert steps == [3, 6, 8, 9, 12, 15, 16, 18, 21, 24]
    plain = Trainer(TrainConfig(**kw))
    plain.run()
    for (name, a), (_, b) in zip(evaluated.model.named_params(), plain.model.named_params()):
        assert np.array_equal(a, b), name


def test_within_an_epoch_from_the_command_line(tmp_path):
    out = subprocess.run([sys.executable, "-m", "dptrain", "train", *"--model mlp --dataset "
                          "synthetic:1x8x8:200 --batch-size 20 --epochs 6 --eval-every-steps 5 "
                          "--stop-at-accuracy 0.000001".split()], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert "eval  step      5  epoch   1" in out.stdout
    assert "stopping: test accuracy" in out.stdout and "at step 5 (within epoch 1)" in out.stdout
