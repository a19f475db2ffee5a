"""Every kind of bad input listed in docs/errors.md: exit 2 and one line naming the culprit.

(Some kinds are also covered where their feature is tested: IDX files in test_cli.py,
several ranks in test_mpi_launch.py.)
"""
import pickle

import numpy as np
import pytest

from test_cli import assert_usage_error, dptrain

SMALL = ["--model", "mlp", "--epochs", 1, "--quiet"]


def cifar_dir(tmp_path, corrupt=None):
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, f)
    if corrupt:
        (tmp_path / corrupt).write_bytes(b"\x80\x04truncated")
    return tmp_path


def test_unreadable_data(tmp_path):
    f = tmp_path / "x.npz"
    np.savez(f, x=np.zeros((10, 1, 4, 4)), y=np.arange(10) % 2)
    f.chmod(0)
    res = dptrain("train", "--dataset", f"npz:{f}", *SMALL)
    if res.returncode == 0:                      # root reads anything: make it unreadable another way
        f.chmod(0o644)
        f.write_bytes(b"PK\x03\x04 not really a zip")
        res = dptrain("train", "--dataset", f"npz:{f}", *SMALL)
    assert_usage_error(res, "x.npz")


def test_corrupt_cifar_batch(tmp_path):
    assert_usage_error(dptrain("train", "--dataset", f"cifar10:{cifar_dir(tmp_path, 'data_batch_3')}",
                               *SMALL), "data_batch_3", "not a CIFAR-10 python batch")


def test_npz_without_expected_arrays(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((4, 8, 8)), labels=np.arange(4))
    assert_usage_error(dptrain("train", "--dataset", f"npz:{tmp_path / 'a.npz'}", *SMALL),
                       "a.npz", "missing array 'x'")


def test_labels_out_of_range(tmp_path):
    np.savez(tmp_path / "a.npz", x=np.zeros((10, 8, 8)), y=np.arange(10) % 3,
             x_test=np.zeros((2, 8, 8)), y_test=np.array([0, 7]))
    assert_usage_error(dptrain("train", "--dataset", f"npz:{tmp_path / 'a.npz'}", *SMALL),
                       "test labels", "7")


@pytest.mark.parametrize("flag,value,named", [
    ("--sampler", "importance", "--sampler"),
    ("--lr-schedule", "exponential", "exponential"),
    ("--sync", "allgather", "--sync"),
    ("--device", "tpu", "--device"),
    ("--dtype", "float8", "--dtype"),
    ("--checkpoint-every", "often", "--checkpoint-every"),
    ("--comm-timeout", "0", "--comm-timeout"),
    ("--comm-timeout", "auto:0", "--comm-timeout"),
    ("--comm-timeout", "soon", "--comm-timeout"),
    ("--accumulate", "0", "--accumulate"),
])
def test_unknown_or_impossible_values(flag, value, named):
    assert_usage_error(dptrain("train", flag, value, *SMALL), named)


def test_accumulate_larger_than_batch():
    assert_usage_error(dptrain("train", "--batch-size", 4, "--accumulate", 8, *SMALL),
                       "--accumulate 8", "--batch-size 4")


def test_unwritable_checkpoint_dir(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert_usage_error(dptrain("train", "--checkpoint-dir", blocker, *SMALL), "--checkpoint-dir",
                       "not a directory")


def test_resume_with_nothing_to_resume(tmp_path):
    assert_usage_error(dptrain("train", "--checkpoint-dir", tmp_path, "--resume", *SMALL),
                       "--resume", "no checkpoint in")
    assert_usage_error(dptrain("train", "--resume", *SMALL), "--resume needs --checkpoint-dir")


def test_corrupt_checkpoint(tmp_path):
    (tmp_path / "ckpt-000000005.npz").write_bytes(b"garbage")
    res = dptrain("train", "--checkpoint-dir", tmp_path, "--resume", *SMALL)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert lines[0].startswith("dptrain: warning: skipping") and "ckpt-000000005.npz" in lines[0]
    assert lines[-1].startswith("dptrain: error: --resume: no usable checkpoint")


def test_checkpoint_of_another_run(tmp_path):
    ok = dptrain("train", "--checkpoint-dir", tmp_path, "--dataset", "synthetic:1x8x8:100", *SMALL)
    assert ok.returncode == 0, ok.stderr
    assert_usage_error(dptrain("train", "--checkpoint-dir", tmp_path, "--resume", "--dataset",
                               "synthetic:1x8x8:100", *SMALL[:-3], "--epochs", 2, "--quiet",
                               "--optimizer", "adam"), "does not match", "optimizer='momentum'")


def test_gpu_requested_where_none_exists():
    from dptrain import backend
    if backend.gpu_available():
        pytest.skip("this machine has a GPU")
    assert_usage_error(dptrain("train", "--device", "gpu", *SMALL), "--device gpu", "no usable GPU")


@pytest.mark.parametrize("value,named", [("nccl", "needs --device gpu"), ("staged", "needs --device gpu"),
                                         ("cuda-mpi", "needs --device gpu"), ("gloo", "unknown value")])
def test_device_transport_on_a_cpu_run(value, named):
    assert_usage_error(dptrain("train", "--comm", value, *SMALL), "--comm", named)


def test_batch_larger_than_the_training_set(capfd):
    from dptrain.cli import main
    code = main(["train", "--model", "mlp", "--dataset", "synthetic:1x8x8:40", "--batch-size", "64",
                 "--quiet"])
    assert code == 2
    assert capfd.readouterr().err.strip() == ("dptrain: error: --batch-size 64 exceeds the 32 training samples "
                                      "of synthetic:1x8x8:40")
