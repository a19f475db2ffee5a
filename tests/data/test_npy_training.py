"""Training on npy:DIR gives the parameters that the same data give through npz: float64, one
rank in this process and two under mpiexec, with an adaptive sampler (its probes read rows by
index) and the training-set evaluation (each rank its share, batch by batch)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from dptrain.cli import main

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
TRAIN = ["train", "--model", "mlp", "--dtype", "float64", "--max-steps", "6", "--batch-size", "16",
         "--sampler", "as", "--eval-train", "--augment", "flip", "--eval-batch-size", "7", "--quiet"]


@pytest.fixture(scope="module")
def same_data(tmp_path_factory):
    """One uint8 data set (no test split: the fixed fifth is held out) as npz and as npy:DIR."""
    tmp = tmp_path_factory.mktemp("npy")
    rng = np.random.default_rng(3)
    protos = rng.integers(0, 256, (4, 1, 6, 6), dtype=np.uint8)
    y = np.arange(90) % 4
    x = np.clip(protos[y] + rng.integers(0, 60, (90, 1, 6, 6)), 0, 255).astype(np.uint8)
    np.savez(tmp / "d.npz", x=x, y=y)
    (tmp / "d").mkdir()
    np.save(tmp / "d" / "x.npy", x[:, 0])              # (N, H, W): one channel
    np.save(tmp / "d" / "y.npy", y)
    return tmp


def weights(path):
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def test_one_rank_npy_equals_npz(same_data, tmp_path):
    for spec, out in (("npz:" + str(same_data / "d.npz"), "a.npz"), ("npy:" + str(same_data / "d"), "b.npz")):
        assert main(TRAIN + ["--dataset", spec, "--save-weights", str(tmp_path / out)]) == 0
    a, b = weights(tmp_path / "a.npz"), weights(tmp_path / "b.npz")
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(b[k], a[k])     # same data, same bits, same arithmetic


@pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
def test_two_ranks_on_npy_equal_one_rank_on_npz(same_data, tmp_path):
    assert main(TRAIN + ["--dataset", "npz:" + str(same_data / "d.npz"),
                         "--save-weights", str(tmp_path / "one.npz")]) == 0
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "dptrain.cli", *TRAIN,
           "--dataset", "npy:" + str(same_data / "d"), "--save-weights", str(tmp_path / "two.npz")]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    one, two = weights(tmp_path / "one.npz"), weights(tmp_path / "two.npz")
    for k in one:                                      # up to summation order (guarantees.md)
        np.testing.assert_allclose(two[k], one[k], rtol=1e-9, atol=1e-12)


def test_no_read_takes_more_rows_than_a_batch(same_data, monkeypatch):
    """Training, evaluation and the adaptive sampler's probes (--as-refresh every-bin, 40
    samples per bin, every 2 steps) read at most a batch of rows at a time (16 here): a
    probe read all of its samples at once before (72)."""
    from dptrain.data.mapped_images import MappedImages
    sizes = []
    read = MappedImages.__getitem__          # what consumers read (digests read raw rows)

    def recorded(self, key):
        out = read(self, key)
        sizes.append(len(out))
        return out
    monkeypatch.setattr(MappedImages, "__getitem__", recorded)
    assert main(TRAIN + ["--dataset", "npy:" + str(same_data / "d"), "--as-refresh", "every-bin",
                         "--as-refresh-per-bin", "40", "--as-beta", "2"]) == 0
    assert sizes and max(sizes) <= 16, sorted(set(sizes))
