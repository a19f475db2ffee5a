"""Checkpoints and resume in one process: bitwise equivalence, corrupt files, refusals."""
import numpy as np
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.errors import UsageError
from dptrain.train import TrainConfig, Trainer, checkpoint

BASE = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", dtype="float64", batch_size=24,
            optimizer="adam", lr=1e-3, quiet=True, threads=1, augment="crop,flip")


def run(**kw):
    t = Trainer(TrainConfig(**{**BASE, **kw}), comm=LocalCommunicator())
    t.run()
    return t.model.state_dict(), t


@pytest.mark.parametrize("sync", ["blocking", "overlap"])
@pytest.mark.parametrize("every", ["1e", "3"])
def test_stop_after_epoch_and_resume_is_bitwise_identical(tmp_path, sync, every):
    straight, _ = run(epochs=3, sync=sync)
    d = tmp_path / "ck"
    run(epochs=1, sync=sync, checkpoint_dir=str(d), checkpoint_every=every)
    resumed, t = run(epochs=3, sync=sync, checkpoint_dir=str(d), checkpoint_every=every, resume=True)
    assert t.resumed_from is not None
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_resume_mid_epoch_is_bitwise_identical(tmp_path):
    straight, _ = run(epochs=2)
    d = str(tmp_path / "ck")
    run(epochs=2, max_steps=3, checkpoint_dir=d, checkpoint_every="1")   # 4 steps per epoch
    resumed, t = run(epochs=2, checkpoint_dir=d, resume=True)
    assert t.resumed_from.name == "ckpt-000000003.npz"
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_checkpoint_contents_and_keep_last_k(tmp_path):
    d = tmp_path / "ck"
    run(epochs=3, checkpoint_dir=str(d), checkpoint_every="2", keep_checkpoints=2)
    names = [p.name for p in checkpoint.list_checkpoints(d)]
    assert names == ["ckpt-000000010.npz", "ckpt-000000012.npz"]
    ck = checkpoint.read(d / names[-1])
    meta = ck["meta"]
    assert meta["version"] == checkpoint.FORMAT_VERSION and meta["step"] == 12
    assert (meta["epoch"], meta["pos"]) == (3, 0) and meta["config"]["model"] == "thesis-cnn"
    assert meta["rng"] == {"seed": 0, "step": 12} and meta["sampler"] == {"name": "uniform"}
    assert meta["optimizer"]["name"] == "adam" and meta["optimizer"]["t"]["0.W"] == 12
    assert "0.W" in ck["model"] and "1.running_mean" in ck["model"] and "m" in ck["optim"]["0.W"]
    assert not list(d.glob(".ckpt-*"))                  # no temporary file left behind


def test_corrupt_checkpoint_is_skipped_with_a_warning(tmp_path, capsys):
    d = tmp_path / "ck"
    straight, _ = run(epochs=3)
    run(epochs=2, checkpoint_dir=str(d))
    newest = checkpoint.list_checkpoints(d)[-1]
    raw = bytearray(newest.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\0" * 64            # damage the middle
    newest.write_bytes(bytes(raw))
    (d / ".ckpt-000000099.1.tmp").write_bytes(b"partial")         # an unfinished write
    resumed, t = run(epochs=3, checkpoint_dir=str(d), resume=True)
    assert t.resumed_from.name == "ckpt-000000004.npz"
    assert "skipping" in capsys.readouterr().err
    # resumed from epoch 1 instead of 2: same end result, bit for bit
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_resume_refusals(tmp_path):
    d = tmp_path / "ck"
    with pytest.raises(UsageError, match="no checkpoint in"):
        run(epochs=1, checkpoint_dir=str(d), resume=True)
    run(epochs=1, checkpoint_dir=str(d))
    # another model: named by its first differing layer (the structural fingerprint)
    with pytest.raises(UsageError, match=r"written by model thesis-cnn .*this run builds lenet5"):
        run(epochs=2, checkpoint_dir=str(d), resume=True, model="lenet5")
    with pytest.raises(UsageError, match=r"batch_size=24 \(now 12\)"):
        run(epochs=2, checkpoint_dir=str(d), resume=True, batch_size=12)
    for p in checkpoint.list_checkpoints(d):
        p.write_bytes(b"not a zip")
    with pytest.raises(UsageError, match="no usable checkpoint .* corrupt"):
        run(epochs=2, checkpoint_dir=str(d), resume=True)
    with pytest.raises(UsageError, match="--resume needs --checkpoint-dir"):
        run(epochs=2, resume=True)


def test_diverging_run_leaves_the_last_checkpoint_loadable(tmp_path):
    from dptrain.errors import TrainingFailure
    d = tmp_path / "ck"
    with pytest.raises(TrainingFailure, match="at step (\\d+)") as failure:
        run(model="mlp", dataset="synthetic:1x8x8:400", optimizer="sgd", lr=1e30, epochs=2,
            checkpoint_dir=str(d), checkpoint_every="1")
    failed_at = int(__import__("re").search(r"at step (\d+)", str(failure.value)).group(1))
    last = checkpoint.list_checkpoints(d)[-1]
    ck = checkpoint.read(last)                                   # intact and loadable
    assert ck["meta"]["step"] <= failed_at
    assert all(np.isfinite(v).all() for v in ck["model"].values())


@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_skip_nonfinite_skips_instead_of_failing(capsys, sync):
    from dptrain.errors import TrainingFailure
    kw = dict(model="mlp", dataset="synthetic:1x8x8:400", optimizer="sgd", lr=1e30, epochs=1,
              sync=sync)
    with pytest.raises(TrainingFailure, match="at step"):
        run(**kw)
    # every step diverges at this learning rate: 2 are skipped, the third fails
    with pytest.raises(TrainingFailure):
        run(skip_nonfinite=2, **kw)
    err = capsys.readouterr().err
    assert "update skipped (1 of 2)" in err and "update skipped (2 of 2)" in err


@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_skipped_steps_leave_parameters_untouched(sync):
    """At lr 1e30 steps 0 and 1 are finite and every later one is not: skipping them all must
    leave exactly the parameters after step 1."""
    kw = dict(model="mlp", dataset="synthetic:1x8x8:400", optimizer="sgd", lr=1e30, epochs=1,
              sync=sync)
    two_steps, _ = run(max_steps=2, **kw)
    skipped, t = run(skip_nonfinite=100, **kw)
    assert t.skipped == t.step - 2 > 0
    for k in two_steps:
        np.testing.assert_array_equal(skipped[k], two_steps[k], err_msg=k)


@pytest.mark.parametrize("sampler", ["obs", "as"])
def test_resume_with_an_adaptive_sampler_is_bitwise_identical(tmp_path, sampler):
    kw = dict(sampler=sampler, obs_recompute_every=1)
    straight, _ = run(epochs=3, **kw)
    d = str(tmp_path / "ck")
    run(epochs=3, max_steps=6, checkpoint_dir=d, checkpoint_every="3", **kw)   # mid-epoch 2
    resumed, t = run(epochs=3, checkpoint_dir=d, resume=True, **kw)
    assert t.resumed_from.name == "ckpt-000000006.npz"
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
