"""A resume refuses a checkpoint that lacks (or has extra) parts of the state a bitwise resume
needs, and a cosine learning-rate curve resumed over another run length (docs/errors.md)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.errors import UsageError
from dptrain.train import TrainConfig, Trainer, checkpoint

BASE = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", dtype="float64", batch_size=24,
            optimizer="momentum", lr=0.01, quiet=True, threads=1)


def run(**kw):
    t = Trainer(TrainConfig(**{**BASE, **kw}), comm=LocalCommunicator())
    t.run()
    return t.model.state_dict()


def rewrite(path, edit):
    """Rewrite a checkpoint's arrays and metadata through ``edit(arrays, meta)``."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    edit(arrays, meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def drop(prefix):
    def edit(arrays, meta):
        for k in [k for k in arrays if k.startswith(prefix)]:
            del arrays[k]
    return edit


@pytest.fixture
def saved(tmp_path):
    d = tmp_path / "ck"
    run(epochs=1, checkpoint_dir=str(d))
    return d, checkpoint.list_checkpoints(d)[-1]


@pytest.mark.parametrize("edit,message", [
    (drop("optim/"), r"optimiser array\(s\) v of 0\.W missing \(sgd keeps t, v per parameter\)"),
    (drop("optim/9."), r"optimiser array\(s\) v of 9\.W missing"),
    (lambda a, m: (drop("optim/9.")(a, m), m["optimizer"]["t"].pop("9.W"),
                   m["optimizer"]["t"].pop("9.b")), r"no optimiser state for 9\.W, 9\.b"),
    (lambda a, m: a.update({"optim/0.W/m": a["optim/0.W/v"]}), r"optimiser array\(s\) m of 0\.W"),
    (lambda a, m: m["optimizer"]["t"].pop("0.W"), r"optimiser step count of 0\.W missing"),
    (drop("model/1.running_var"), r"model arrays 1\.running_var are missing"),
    (lambda a, m: a.update({"model/20.W": a["model/0.W"]}), r"model arrays 20\.W that this model"),
    (lambda a, m: m.pop("rng"), r"no rng in its metadata"),
    (lambda a, m: m["rng"].update(step=1), r"RNG state .* is not that of step 4"),
    (lambda a, m: m["sampler"].update(name="obs"), r"sampler state is for 'obs'"),
])
def test_incomplete_checkpoint_is_refused_naming_the_part(saved, edit, message):
    d, path = saved
    rewrite(path, edit)
    with pytest.raises(UsageError, match=message) as info:
        run(epochs=2, checkpoint_dir=str(d), resume=True)
    assert str(path) in str(info.value)


def test_missing_sampler_table_is_refused(tmp_path):
    d = tmp_path / "ck"
    run(epochs=1, checkpoint_dir=str(d), sampler="obs")
    path = checkpoint.list_checkpoints(d)[-1]
    rewrite(path, drop("sampler/losses"))
    with pytest.raises(UsageError, match=r"sampler state losses is missing"):
        run(epochs=2, checkpoint_dir=str(d), resume=True, sampler="obs")


def test_missing_momentum_is_exit_2_from_the_command_line(saved):
    d, path = saved
    rewrite(path, drop("optim/"))
    cmd = [sys.executable, "-m", "dptrain", "train", "--model", "thesis-cnn", "--dataset",
           "synthetic:1x28x28:120", "--dtype", "float64", "--batch-size", "24", "--optimizer",
           "momentum", "--lr", "0.01", "--threads", "1", "--quiet", "--epochs", "2",
           "--checkpoint-dir", str(d), "--resume"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                       env=dict(os.environ, OMPI_COMM_WORLD_SIZE="", PMI_SIZE=""))
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(f"dptrain: error: {path}: incomplete checkpoint: optimiser "
                               "array(s) v of 0.W missing"), p.stderr
    assert "Traceback" not in p.stderr


def test_cosine_resumed_over_another_length_is_refused(tmp_path):
    d = tmp_path / "ck"
    run(epochs=3, max_steps=6, lr_schedule="cosine", checkpoint_dir=str(d), checkpoint_every="1")
    with pytest.raises(UsageError, match=r"cosine decays over its run's 6 steps "
                                         r"\(--epochs 3 --max-steps 6\), this run has 12 "
                                         r"\(--epochs 3\)"):
        run(epochs=3, lr_schedule="cosine", checkpoint_dir=str(d), resume=True)


def test_cosine_resumed_with_the_same_length_is_bitwise(tmp_path):
    d = tmp_path / "ck"
    straight = run(epochs=3, lr_schedule="cosine", warmup_steps=2, checkpoint_dir=str(d),
                   keep_checkpoints=5)
    first = tmp_path / "first"
    first.mkdir()
    (first / "ckpt-000000004.npz").write_bytes((d / "ckpt-000000004.npz").read_bytes())
    resumed = run(epochs=3, lr_schedule="cosine", warmup_steps=2, checkpoint_dir=str(first),
                  resume=True)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_step_schedule_may_be_extended_bitwise(tmp_path):
    """The step schedule does not depend on the run's length: extending a run is allowed."""
    straight = run(epochs=3, lr_schedule="step", lr_step_size=3, lr_gamma=0.5)
    d = tmp_path / "ck"
    run(epochs=1, lr_schedule="step", lr_step_size=3, lr_gamma=0.5, checkpoint_dir=str(d))
    resumed = run(epochs=3, lr_schedule="step", lr_step_size=3, lr_gamma=0.5,
                  checkpoint_dir=str(d), resume=True)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
