"""How long a run is (--epochs, --max-steps) and when it evaluates (--eval-every, --eval-train)."""
import json

import pytest

from dptrain.train import TrainConfig, Trainer
from dptrain.train.run_length import resolve
from dptrain.train.threads import default_threads


@pytest.mark.parametrize("epochs,max_steps,expect", [
    (None, None, (1, 63, "--epochs 1, the default")),
    (3, None, (3, 189, "--epochs")),
    (None, 110, (2, 110, "--max-steps")),          # N steps, over as many epochs as needed
    (None, 63, (1, 63, "--max-steps")),
    (2, 100, (2, 100, "--max-steps")),             # both: whichever comes first
    (1, 100, (1, 63, "--epochs")),
])
def test_which_limit_ends_the_run(epochs, max_steps, expect):
    length = resolve(epochs, max_steps, steps_per_epoch=63)
    assert (length.epochs, length.total_steps, length.ends_by) == expect


def run(tmp_path, capsys=None, **kw):
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "m.jsonl"
    cfg = dict(model="mlp", dataset="synthetic:1x8x8:100", batch_size=16, metrics_out=str(out),
               **kw)
    result = Trainer(TrainConfig(**cfg)).run()
    return result, [json.loads(line) for line in out.read_text().splitlines()]


def test_max_steps_alone_runs_that_many_steps_and_says_so(tmp_path, capsys):
    result, lines = run(tmp_path, max_steps=12)                # 5 steps per epoch
    assert result["steps"] == 12 and result["epochs"] == 3
    first = capsys.readouterr().out.splitlines()[0]
    assert "runs 12 steps (--max-steps; 5 steps per epoch)" in first


def test_test_split_every_n_epochs_and_after_the_last(tmp_path):
    _, lines = run(tmp_path, epochs=5, eval_every=2, quiet=True)
    assert [r["epoch"] for r in lines if r["type"] == "eval"] == [2, 4, 5]
    _, lines = run(tmp_path / "..", epochs=3, eval_every=0, quiet=True)
    assert [r["epoch"] for r in lines if r["type"] == "eval"][-1:] == [3]


def test_training_set_evaluated_only_when_asked(tmp_path):
    _, lines = run(tmp_path / "plain", epochs=2, quiet=True)
    assert not [r for r in lines if r.get("split") == "train"]
    _, lines = run(tmp_path / "asked", epochs=2, eval_train=True, quiet=True)
    train_evals = [r for r in lines if r.get("split") == "train"]
    assert [r["epoch"] for r in train_evals] == [1, 2] and train_evals[0]["samples"] == 80


def test_log_every_prints_on_the_console(tmp_path, capsys):
    run(tmp_path, max_steps=4, log_every=2)
    out = capsys.readouterr().out
    assert "step      2  epoch   1  loss" in out and "step      4  epoch   1  loss" in out


@pytest.mark.parametrize("environ,threads", [
    ({}, 1), ({"SLURM_CPUS_PER_TASK": "4"}, 4), ({"OMP_NUM_THREADS": "2"}, 2),
    ({"OMP_NUM_THREADS": "", "SLURM_CPUS_PER_TASK": "x"}, 1),
])
def test_default_threads(environ, threads):
    assert default_threads(environ) == threads
