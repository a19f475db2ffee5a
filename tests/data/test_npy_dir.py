"""npy:DIR, the memory-mapped directory data set: the same data as npz, read by rows, checked
in one streamed pass with one line naming the file, trained on to the same parameters."""
import json
import os

import numpy as np
import pytest

from dptrain import data
from dptrain.cli import main
from dptrain.data import stream_scan
from dptrain.data.mapped_images import MappedImages


def write_dir(d, **arrays):
    d.mkdir(exist_ok=True)
    for name, a in arrays.items():
        np.save(d / f"{name}.npy", a)
    return d


def sample(dtype, n=60, shape=(3, 8, 8), seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + shape)
    x = (x * 255).astype(np.uint8) if dtype == np.uint8 else x.astype(dtype)
    return x, np.arange(n) * 7 % 4


@pytest.mark.parametrize("dtype", [np.uint8, np.float32, np.float64])
@pytest.mark.parametrize("with_test", [False, True])
def test_same_normalised_data_as_npz(tmp_path, dtype, with_test, monkeypatch):
    monkeypatch.setattr(stream_scan, "CHUNK_BYTES", 4096)      # many chunks, one row each
    x, y = sample(dtype)
    arrays = dict(x=x, y=y) | (dict(x_test=x[:12], y_test=y[:12]) if with_test else {})
    np.savez(tmp_path / "d.npz", **arrays)
    a = data.load(f"npz:{tmp_path / 'd.npz'}")
    b = data.load(f"npy:{write_dir(tmp_path / 'd', **arrays)}")
    assert isinstance(b.x_train, MappedImages) and b.x_train.shape == a.x_train.shape
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12)
    np.testing.assert_allclose(b.std, a.std, rtol=1e-12)
    assert np.array_equal(b.x_train[np.arange(len(a.x_train))], a.x_train)
    assert np.array_equal(b.x_test[0:len(a.x_test)], a.x_test)
    assert np.array_equal(b.y_train, a.y_train) and np.array_equal(b.y_test, a.y_test)
    assert b.num_classes == a.num_classes == 4


def test_rows_are_read_by_index_and_never_whole(tmp_path):
    x, y = sample(np.uint8)
    ds = data.load(f"npy:{write_dir(tmp_path / 'd', x=x, y=y, x_test=x[:5], y_test=y[:5])}")
    whole = ds.x_train[:]
    ids = np.array([5, 0, 59, 5])
    assert np.array_equal(ds.x_train[ids], whole[ids])
    assert np.array_equal(ds.x_train[-1], whole[-1])
    assert np.array_equal(ds.x_train[10:20:3], whole[10:20:3])
    mask = np.arange(60) % 7 == 0
    assert np.array_equal(ds.x_train[mask], whole[mask])
    assert ds.x_train[np.zeros(0, int)].shape == (0, 3, 8, 8)
    with pytest.raises(TypeError, match="read by rows"):
        np.asarray(ds.x_train)
    with pytest.raises(IndexError):
        ds.x_train[np.array([60])]


def test_given_statistics_are_used_and_checked(tmp_path):
    x, y = sample(np.uint8)
    d = write_dir(tmp_path / "d", x=x, y=y)
    (d / "stats.json").write_text(json.dumps({"mean": [0.5, 0.5, 0.5], "std": [0.25] * 3}))
    ds = data.load(f"npy:{d}")
    assert np.array_equal(ds.x_train[:2], (x[ds_rows(ds)[:2]] / np.float32(255) - 0.5) * 4)
    (d / "stats.json").write_text(json.dumps({"mean": [0.5], "std": [0.25]}))
    with pytest.raises(data.DataError, match=r"stats.json: 1 means and 1 standard deviations "
                                             "for images of 3 channels"):
        data.load(f"npy:{d}")


def ds_rows(ds):
    return ds.x_train.rows


def nan_pixel(d):
    x, y = sample(np.float32)
    x[41, 2, 3, 4] = np.nan
    write_dir(d, x=x, y=y)
    return "x.npy: sample 41 has a non-finite pixel value (nan)"


def nan_pixel_with_stats(d):            # given statistics do not skip a float file's pass
    says = nan_pixel(d)
    (d / "stats.json").write_text('{"mean": [0, 0, 0], "std": [1, 1, 1]}')
    return says


def bad_label(d):
    x, y = sample(np.uint8)
    write_dir(d, x=x, y=np.r_[y[:-1], -3])
    return "y.npy: sample 59: label -3 out of range"


def mismatched_counts(d):
    x, y = sample(np.uint8)
    write_dir(d, x=x, y=y[:50])
    return "y.npy: 50 labels for 60 images"


def wrong_dims(d):
    x, y = sample(np.uint8)
    write_dir(d, x=x[:, :, :, :, None], y=y)
    return "x.npy: images must be (N, H, W) or (N, C, H, W)"


def shape_mismatch(d):
    x, y = sample(np.uint8)
    write_dir(d, x=x, y=y, x_test=x[:4, :2], y_test=y[:4])
    return "x_test.npy: test images (2, 8, 8) and training images (3, 8, 8) differ"


def lonely_test_images(d):
    x, y = sample(np.uint8)
    write_dir(d, x=x, y=y, x_test=x[:4])
    return "x_test.npy and y_test.npy must come together"


def not_npy(d):
    d.mkdir()
    (d / "x.npy").write_bytes(b"\x93NUMPY garbage")
    np.save(d / "y.npy", np.arange(3))
    return "x.npy: not a readable .npy file"


def pickled_labels(d):
    x, _ = sample(np.uint8)
    d.mkdir()
    np.save(d / "x.npy", x)
    np.save(d / "y.npy", np.array([object()] * 60), allow_pickle=True)
    return "y.npy: not a readable .npy file"


def fifo_images(d):
    d.mkdir()
    os.mkfifo(d / "x.npy")                    # opened without blocking, refused by fstat
    np.save(d / "y.npy", np.arange(3))
    return "x.npy: not a regular file (a FIFO)"


def bad_stats(d):
    x, y = sample(np.float32)
    write_dir(d, x=x, y=y)
    (d / "stats.json").write_text('{"mean": [0, 0, 0], "std": [1, 0, 1]}')
    return "stats.json: means must be finite and standard deviations positive"


@pytest.mark.parametrize("make", [nan_pixel, nan_pixel_with_stats, bad_label, mismatched_counts, wrong_dims,
                                  shape_mismatch, lonely_test_images, not_npy, pickled_labels,
                                  fifo_images, bad_stats])
def test_bad_directories_are_one_line_naming_the_file(tmp_path, capfd, make):
    d = tmp_path / "d"
    says = make(d)
    code = main(["train", "--model", "mlp", "--dataset", f"npy:{d}", "--epochs", "1", "--quiet"])
    err = capfd.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("dptrain: error: "), err
    assert str(d) in err and says in err, err


def test_fingerprint_sees_the_rows_and_the_statistics(tmp_path):
    """What ranks compare at start-up (data/fingerprint.py): a sampled row that differs, or
    given statistics that differ, change the content fields; the same files give the same."""
    from dptrain.data.fingerprint import dataset_fields
    x, y = sample(np.uint8)

    def changed(d):       # the fields whose values differ from the first directory's
        return {what.split(" of npy:")[0] for (what, v), (_, v0) in
                zip(dataset_fields(data.load(f"npy:{d}")), first) if v != v0}
    first = dataset_fields(data.load(f"npy:{write_dir(tmp_path / 'a', x=x, y=y)}"))
    assert changed(write_dir(tmp_path / "b", x=x, y=y)) == set()
    x2 = x.copy()
    x2[0, 0, 0, 0] ^= 1                         # the first row is always sampled
    assert changed(write_dir(tmp_path / "c", x=x2, y=y)) & {
        "the content of the training images", "the content of the test images"}
    d = write_dir(tmp_path / "d", x=x, y=y)
    (d / "stats.json").write_text(json.dumps({"mean": [0.5] * 3, "std": [0.25] * 3}))
    assert changed(d) == {"the content of the training images"}
