"""CIFAR-10 readers: nothing in a batch file is executed; python and binary batches agree."""
import os
import pickle

import numpy as np
import pytest

from dptrain import data
from dptrain.data import cifar
from dptrain.data.readers import DataError


def write_python_batches(d, n=4, protocol=pickle.DEFAULT_PROTOCOL, seed=1):
    rng = np.random.default_rng(seed)
    out = {}
    for name in cifar.TRAIN + [cifar.TEST]:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        with open(d / name, "wb") as f:
            pickle.dump({b"batch_label": b"batch", b"labels": y, b"data": x,
                         b"filenames": [b"f.png"] * n}, f, protocol=protocol)
        out[name] = (x, y)
    return out


class _MakesAFile:
    """Unpickling an instance of this calls os.system: what a crafted data_batch would do."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_pickle_that_would_create_a_file_is_refused(tmp_path):
    write_python_batches(tmp_path)
    target = tmp_path / "pwned"
    with open(tmp_path / "data_batch_2", "wb") as f:
        pickle.dump({b"data": _MakesAFile(target), b"labels": [0]}, f)
    with pytest.raises(DataError, match=r"data_batch_2: .*global posix.system is not allowed"):
        data.load(f"cifar10:{tmp_path}")
    assert not target.exists()


def test_pickle_payload_through_the_cli_exit_2_and_no_file(tmp_path):
    from test_cli import assert_usage_error, dptrain
    write_python_batches(tmp_path)
    target = tmp_path / "pwned"
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump(_MakesAFile(target), f)
    res = dptrain("train", "--dataset", f"cifar10:{tmp_path}", "--model", "mlp", "--max-steps", 1,
                  "--quiet")
    assert_usage_error(res, "test_batch", "not allowed")
    assert not target.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_python_batches_of_every_protocol(tmp_path, protocol):
    written = write_python_batches(tmp_path, protocol=protocol)
    d = data.load(f"cifar10:{tmp_path}")
    assert d.x_train.shape == (20, 3, 32, 32) and d.num_classes == 10
    np.testing.assert_array_equal(d.y_test, written["test_batch"][1])


def test_binary_batches_read_the_same_as_python_ones(tmp_path):
    py, binary = tmp_path / "cifar-10-batches-py", tmp_path / "cifar-10-batches-bin"
    py.mkdir()
    binary.mkdir()
    for name, (x, y) in write_python_batches(py).items():
        records = np.concatenate([np.asarray(y, np.uint8)[:, None], x], axis=1)
        (binary / f"{name}.bin").write_bytes(records.tobytes())
    a = cifar.read(py)
    b = cifar.read(binary)
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert data.load(f"cifar10:{binary}").x_train.shape == (20, 3, 32, 32)


def test_truncated_binary_batch(tmp_path):
    (tmp_path / "test_batch.bin").write_bytes(bytes(3073))
    for name in cifar.TRAIN:
        (tmp_path / f"{name}.bin").write_bytes(bytes(3073 * 2))
    (tmp_path / "data_batch_4.bin").write_bytes(bytes(3073 + 10))
    with pytest.raises(DataError, match="data_batch_4.bin: not a CIFAR-10 binary batch"):
        cifar.read(tmp_path)


def test_pixels_outside_a_byte_are_refused_not_wrapped(tmp_path):
    write_python_batches(tmp_path)
    x = np.zeros((3, 3072), np.int64)
    x[2, 5] = 300
    with open(tmp_path / "data_batch_1", "wb") as f:
        pickle.dump({b"data": x, b"labels": [0, 1, 2]}, f)
    with pytest.raises(DataError, match="data_batch_1: sample 2: pixel values outside 0..255"):
        cifar.read(tmp_path)


@pytest.mark.parametrize("labels,match", [([0, 1], "3 images but 2 labels"),
                                          ([b"cat", b"dog", b"cat"], "labels must be integers")])
def test_labels_that_do_not_fit(tmp_path, labels, match):
    write_python_batches(tmp_path)
    with open(tmp_path / "data_batch_5", "wb") as f:
        pickle.dump({b"data": np.zeros((3, 3072), np.uint8), b"labels": labels}, f)
    with pytest.raises(DataError, match=f"data_batch_5: {match}"):
        cifar.read(tmp_path)
