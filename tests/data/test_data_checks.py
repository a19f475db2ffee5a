"""Data sets are checked at load: each problem a DataError naming the split's file and sample."""
import gzip

import numpy as np
import pytest

from dptrain import data
from dptrain.data import validate
from dptrain.data.readers import DataError, read_idx


def npz(tmp_path, name="a.npz", **arrays):
    rng = np.random.default_rng(0)
    arrays.setdefault("x", rng.random((50, 1, 8, 8)))
    arrays.setdefault("y", np.arange(50) % 5)
    np.savez(tmp_path / name, **arrays)
    return f"npz:{tmp_path / name}"


def test_non_finite_pixels_name_the_sample_in_the_file(tmp_path):
    x = np.zeros((50, 1, 8, 8))
    x[37, 0, 2, 3] = np.inf
    with pytest.raises(DataError, match=r"a.npz images: sample 37 has a non-finite pixel value \(inf\)"):
        data.load(npz(tmp_path, x=x))
    xt = np.zeros((4, 1, 8, 8))
    xt[2, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="a.npz test images: sample 2 has a non-finite"):
        data.load(npz(tmp_path, x_test=xt, y_test=np.arange(4)))


def test_values_beyond_float32_are_refused(tmp_path):
    x = np.zeros((50, 1, 8, 8))
    x[3, 0, 0, 0] = 1e300
    with pytest.raises(DataError, match="sample 3 has a beyond float32 pixel value"):
        data.load(npz(tmp_path, x=x))


@pytest.mark.parametrize("arrays,says", [
    ({"y": np.arange(60) % 5}, "60 labels for 50 images"),
    ({"y": np.array(["cat", "dog"] * 25)}, "labels must be integer class ids, got dtype <U3"),
    ({"y": np.r_[np.arange(49) % 5, 0.5]}, "sample 49: label 0.5 is not an integer class id"),
    ({"y": np.r_[np.arange(49) % 5, -1]}, "sample 49: label -1 out of range"),
    ({"x": np.zeros((50, 1, 8, 8), complex)}, "images must be real numbers"),
    ({"x": np.zeros((50, 1, 0, 8))}, "hold no pixels"),
    ({"x": np.zeros((50, 8, 8, 3))}, "look channels-last (N, H, W, C)"),
    ({"x_test": np.zeros((0, 1, 8, 8)), "y_test": np.zeros(0, int)}, "the test split is empty"),
    ({"x_test": np.zeros((3, 1, 8, 8)), "y_test": np.arange(4)}, "test labels: 4 labels for 3 images"),
])
def test_labels_and_images_that_make_no_sense(tmp_path, arrays, says):
    with pytest.raises(DataError, match=says.replace("(", r"\(").replace(")", r"\)")):
        data.load(npz(tmp_path, **arrays))


def test_a_stray_label_is_not_a_hundred_class_model(tmp_path):
    y = np.r_[np.arange(49) % 10, 99]
    with pytest.raises(DataError, match=r"89 of the class ids 0..99 never occur \(10, 11, 12, 13, 14, ...\); "
                                        r"a stray label\? give --num-classes 100"):
        data.load(npz(tmp_path, y=y))
    assert data.load(npz(tmp_path, y=y), num_classes=100).num_classes == 100
    with pytest.raises(DataError, match="label 99 out of range"):
        data.load(npz(tmp_path, y=y), num_classes=10)


def test_impossible_sizes_are_refused_before_allocating(tmp_path):
    with pytest.raises(DataError, match=r"synthetic:1x28x28:1000000000000 .* would need about .* GiB"):
        data.load("synthetic:1x28x28:1000000000000")
    with pytest.raises(DataError, match="more than the"):
        validate.check_fits("a model", validate.available_memory() * 2.0)


def test_a_damaged_gzip_body_is_a_data_error(tmp_path):
    raw = gzip.compress(bytes(range(256)) * 64)
    path = tmp_path / "t.idx.gz"
    path.write_bytes(raw[:30] + bytes(40) + raw[70:])
    with pytest.raises(DataError, match="t.idx.gz: cannot read"):
        read_idx(path)


def test_an_idx_header_promising_more_than_the_file_can_hold_is_not_read(tmp_path):
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 3]) + (100000).to_bytes(4, "big") * 3 + bytes(4096)))
    with pytest.raises(DataError, match=r"bomb.gz: truncated IDX file \(the header promises "
                                        r"1000000000000000 data bytes, more than the file can hold\)"):
        read_idx(path)


def test_npz_members_are_measured_before_they_are_inflated(tmp_path, monkeypatch):
    spec = npz(tmp_path)
    monkeypatch.setattr(validate, "available_memory", lambda: 1000)      # bytes
    with pytest.raises(DataError, match=r"a.npz: its arrays would need about .* more than the"):
        data.load(spec)
