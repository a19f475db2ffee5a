"""Readers on small files the tests write, and the errors bad files produce."""
import gzip
import pickle
import struct

import numpy as np
import pytest

from dptrain import data
from dptrain.data import DataError


def write_idx(path, array, compress=False, magic_type=0x08, truncate=0):
    header = bytes([0, 0, magic_type, array.ndim]) + b"".join(struct.pack(">I", d) for d in array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    if truncate:
        raw = raw[:-truncate]
    opener = gzip.open if compress else open
    with opener(path, "wb") as f:
        f.write(raw)


def make_mnist_dir(tmp_path, n_train=20, n_test=10, compress=False, **overrides):
    rng = np.random.default_rng(0)
    suffix = ".gz" if compress else ""
    files = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    files.update(overrides)
    for name, arr in files.items():
        write_idx(tmp_path / (name + suffix), arr, compress)
    return tmp_path


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_idx_raw_and_gzip(tmp_path, compress):
    d = data.load(f"mnist:{make_mnist_dir(tmp_path, compress=compress)}")
    assert d.x_train.shape == (20, 1, 28, 28) and d.x_test.shape == (10, 1, 28, 28)
    assert d.num_classes == 10 and list(d.y_train[:3]) == [0, 1, 2]
    assert abs(float(d.x_train.mean())) < 1e-5 and abs(float(d.x_train.std()) - 1) < 1e-4


def test_fashion_mnist_uses_the_same_files(tmp_path):
    assert data.load(f"fashion-mnist:{make_mnist_dir(tmp_path)}").x_train.shape == (20, 1, 28, 28)


def test_read_idx_values(tmp_path):
    arr = np.arange(24).reshape(2, 3, 4)
    write_idx(tmp_path / "a.idx", arr)
    np.testing.assert_array_equal(data.read_idx(tmp_path / "a.idx"), arr)


def test_truncated_idx(tmp_path):
    make_mnist_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((20, 28, 28)), truncate=100)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte: truncated IDX file"):
        data.load(f"mnist:{tmp_path}")


def test_wrong_idx_magic(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"\x12\x34\x56\x78" + bytes(10))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: not an IDX file \(bad magic"):
        data.load(f"mnist:{tmp_path}")


def test_image_label_count_mismatch(tmp_path):
    make_mnist_dir(tmp_path, **{"train-labels-idx1-ubyte": np.arange(19) % 10})
    with pytest.raises(DataError, match="20 images but train-labels-idx1-ubyte has 19 labels"):
        data.load(f"mnist:{tmp_path}")


def test_missing_file_and_directory(tmp_path):
    make_mnist_dir(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DataError, match="missing t10k-images-idx3-ubyte"):
        data.load(f"mnist:{tmp_path}")
    with pytest.raises(DataError, match="no such directory"):
        data.load(f"mnist:{tmp_path / 'nope'}")


def test_labels_out_of_range(tmp_path):
    make_mnist_dir(tmp_path, **{"train-labels-idx1-ubyte": np.full(20, 12)})
    with pytest.raises(DataError, match="label 12 out of range"):
        data.load(f"mnist:{tmp_path}")


def test_cifar10_batches(tmp_path):
    rng = np.random.default_rng(1)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(tmp_path / name, "wb") as f:
            pickle.dump({b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8),
                         b"labels": list(rng.integers(0, 10, 4))}, f)
    d = data.load(f"cifar10:{tmp_path}")
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    (tmp_path / "test_batch").write_bytes(b"garbage")
    with pytest.raises(DataError, match="test_batch: not a CIFAR-10 python batch"):
        data.load(f"cifar10:{tmp_path}")


def test_npz_with_and_without_test_split(tmp_path):
    rng = np.random.default_rng(2)
    x, y = rng.random((50, 1, 8, 8)), rng.integers(0, 3, 50)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    d = data.load(f"npz:{tmp_path / 'a.npz'}")
    assert len(d.x_train) == 40 and len(d.x_test) == 10 and d.num_classes == 3
    np.savez(tmp_path / "b.npz", x=x, y=y, x_test=x[:5], y_test=y[:5])
    assert len(data.load(f"npz:{tmp_path / 'b.npz'}").x_test) == 5
    np.savez(tmp_path / "c.npz", images=x)
    with pytest.raises(DataError, match=r"c.npz: missing array 'x'"):
        data.load(f"npz:{tmp_path / 'c.npz'}")
    np.savez(tmp_path / "d.npz", x=x, y=-y - 1)
    with pytest.raises(DataError, match="label -. out of range"):
        data.load(f"npz:{tmp_path / 'd.npz'}")


def test_mnist5k_is_the_real_embedded_data():
    d = data.load("mnist5k")
    assert (len(d.x_train), len(d.x_test)) == (4000, 1000)
    assert d.input_shape == (1, 28, 28) and d.num_classes == 10
    assert sorted(set(d.y_train.tolist())) == list(range(10))
    again = data.load("mnist5k")
    np.testing.assert_array_equal(d.y_test, again.y_test)       # fixed split


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'imagenet'"):
        data.load("imagenet")


def test_global_batches_and_rank_slices():
    batches = data.global_batches(10, 4, seed=3, epoch=0)
    assert [len(b) for b in batches] == [4, 4, 2]                 # last partial batch kept
    assert sorted(np.concatenate(batches).tolist()) == list(range(10))
    again = data.global_batches(10, 4, seed=3, epoch=0)
    assert all(np.array_equal(a, b) for a, b in zip(batches, again))
    assert not np.array_equal(np.concatenate(data.global_batches(10, 4, 3, 1)),
                              np.concatenate(batches))
    b = np.arange(7)
    parts = [data.rank_slice(b, r, 3) for r in range(3)]
    assert [p.tolist() for p in parts] == [[0, 1, 2], [3, 4], [5, 6]]


def test_augmentation_keyed_by_sample():
    rng = np.random.default_rng(0)
    x = rng.random((6, 3, 8, 8)).astype(np.float32)
    ids = np.arange(100, 106)
    full = data.augment.apply(x, ids, ("crop", "flip"), seed=1, step=2, crop_pad=2)
    part = data.augment.apply(x[2:4], ids[2:4], ("crop", "flip"), seed=1, step=2, crop_pad=2)
    np.testing.assert_array_equal(full[2:4], part)
    assert full.shape == x.shape and not np.array_equal(full, x)
    flipped = data.augment.apply(x, ids, ("flip",), seed=1, step=2)
    for a, b in zip(flipped, x):                           # each sample flipped or untouched
        assert np.array_equal(a, b) or np.array_equal(a, b[:, :, ::-1])
    with pytest.raises(ValueError, match="unknown augmentation 'rotate'"):
        data.augment.parse("crop,rotate")
