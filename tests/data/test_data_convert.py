"""`dptrain data convert`: the formats we read written as npy:DIR, read back as the same data;
an existing output refused; a bad source leaves nothing behind."""
import json

import numpy as np
import pytest

from dptrain import data
from dptrain.cli import main
from test_readers import make_mnist_dir


def convert(spec, out, capfd):
    code = main(["data", "convert", "--dataset", spec, "--output", str(out)])
    return code, capfd.readouterr()


def same_data(a, b):
    assert np.array_equal(b.x_train[:], a.x_train) and np.array_equal(b.x_test[:], a.x_test)
    assert np.array_equal(b.y_train, a.y_train) and np.array_equal(b.y_test, a.y_test)
    assert b.num_classes == a.num_classes
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-12)


@pytest.mark.parametrize("with_test", [False, True])
def test_npz_round_trip(tmp_path, capfd, with_test):
    rng = np.random.default_rng(1)
    arrays = {"x": (rng.random((40, 2, 5, 5)) * 255).astype(np.uint8), "y": np.arange(40) % 3}
    if with_test:
        arrays |= {"x_test": arrays["x"][:7], "y_test": arrays["y"][:7]}
    np.savez(tmp_path / "d.npz", **arrays)
    code, out = convert(f"npz:{tmp_path / 'd.npz'}", tmp_path / "d", capfd)
    assert code == 0 and out.out.startswith(f"wrote {tmp_path / 'd'}: "), out
    written = sorted(p.name for p in (tmp_path / "d").iterdir())
    assert written == sorted(["stats.json"] + [f"{k}.npy" for k in arrays])
    for k, a in arrays.items():                     # as stored: uint8 stays uint8
        b = np.load(tmp_path / "d" / f"{k}.npy")
        assert b.dtype == (a.dtype if k.startswith("x") else np.int64) and np.array_equal(b, a)
    stats = json.loads((tmp_path / "d" / "stats.json").read_text())
    assert len(stats["mean"]) == len(stats["std"]) == 2
    same_data(data.load(f"npz:{tmp_path / 'd.npz'}"), data.load(f"npy:{tmp_path / 'd'}"))


def test_idx_round_trip(tmp_path, capfd):
    (tmp_path / "idx").mkdir()
    src = make_mnist_dir(tmp_path / "idx")
    code, out = convert(f"mnist:{src}", tmp_path / "d", capfd)
    assert code == 0, out
    same_data(data.load(f"mnist:{src}"), data.load(f"npy:{tmp_path / 'd'}"))


@pytest.mark.parametrize("existing", ["empty directory", "file", "directory"])
def test_an_existing_output_is_refused_and_left_alone(tmp_path, capfd, existing):
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 1, 4, 4), np.uint8), y=np.arange(10) % 2)
    out = tmp_path / "out"
    if existing == "file":
        out.write_text("mine")
    else:
        out.mkdir()
        if existing == "directory":
            (out / "x.npy").write_text("mine")
    code, said = convert(f"npz:{tmp_path / 'd.npz'}", out, capfd)
    assert code == 2
    assert said.err.strip() == (f"dptrain: error: --output {out}: exists; data convert never "
                                "writes over a file or directory (give a new path)")
    if existing == "file":
        assert out.read_text() == "mine"
    else:
        assert [p.name for p in out.iterdir()] == (["x.npy"] if existing == "directory" else [])
        if existing == "directory":
            assert (out / "x.npy").read_text() == "mine"


def test_a_bad_source_is_one_line_and_leaves_nothing(tmp_path, capfd):
    x = np.zeros((10, 1, 4, 4))
    x[6, 0, 1, 1] = np.nan
    np.savez(tmp_path / "d.npz", x=x, y=np.arange(10) % 2)
    code, said = convert(f"npz:{tmp_path / 'd.npz'}", tmp_path / "out", capfd)
    assert code == 2
    assert said.err.strip() == (f"dptrain: error: npz:{tmp_path / 'd.npz'} training images: "
                                "sample 6 has a non-finite pixel value (nan)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_a_failure_while_writing_leaves_no_temporary_directory(tmp_path, capfd, monkeypatch):
    from dptrain.data import convert as module
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 1, 4, 4), np.uint8), y=np.arange(10) % 2)

    def disk_full(*args):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(module, "write_stats", disk_full)
    code, said = convert(f"npz:{tmp_path / 'd.npz'}", tmp_path / "out", capfd)
    assert code == 3 and "No space left on device" in said.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]
