"""A data set as the trainer holds it, and the steps every in-memory format shares: the
fixed train/test split, the checks, the digests and the normalisation (``assemble``). Apart
from datasets.py (the names), so that the readers of each format import it without importing
the dispatcher that imports them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import DataError
from .fingerprint import SPLIT_ARRAYS as SPLITS, array_digest
from .validate import as_images, as_labels, inferred_classes


@dataclass
class Dataset:
    name: str
    x_train: np.ndarray          # (N, C, H, W) float32, normalised (npy:DIR: MappedImages)
    y_train: np.ndarray          # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    mean: np.ndarray             # per-channel statistics of the training split
    std: np.ndarray
    # content digests of the splits as read, before normalisation (data/fingerprint.py)
    digests: dict | None = None

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    def __repr__(self):
        return (f"Dataset({self.name}: {len(self.x_train)} train, {len(self.x_test)} test, "
                f"shape {self.input_shape}, {self.num_classes} classes)")


def fixed_split(x, y, n_test: int):
    """A permutation fixed once and for all (independent of --seed), so test sets are comparable."""
    perm = np.random.default_rng(20171218).permutation(len(x))
    test, train = perm[:n_test], perm[n_test:]
    return x[train], y[train], x[test], y[test]


def assemble(name, x, y, xt, yt, num_classes) -> Dataset:
    x = as_images(x, f"{name} training images")
    xt = as_images(xt, f"{name} test images")
    if x.shape[1:] != xt.shape[1:]:
        raise DataError(f"{name}: training images {x.shape[1:]} and test images {xt.shape[1:]} differ")
    if len(x) == 0:
        raise DataError(f"{name}: no training samples")
    if len(xt) == 0:
        raise DataError(f"{name}: no test samples (the test split is empty)")
    y = as_labels(y, len(x), f"{name} training labels", num_classes)
    yt = as_labels(yt, len(xt), f"{name} test labels", num_classes)
    if num_classes is None:
        # classes are what training can learn
        num_classes = inferred_classes(y, f"{name} training labels")
        if len(yt) and yt.max() >= num_classes:
            raise DataError(f"{name} test labels: label {int(yt.max())} out of range "
                            f"[0, {num_classes}) of the training labels")
    # digested as read: normalising sums in an order a CPU's SIMD width may change, and
    # ranks on different nodes must not differ by that
    digests = {attr: array_digest(a) for attr, a in zip(SPLITS, (x, y, xt, yt))}
    mean = x.mean(axis=(0, 2, 3), dtype=np.float64)
    std = x.std(axis=(0, 2, 3), dtype=np.float64)
    std[std < 1e-8] = 1.0
    view = (1, -1, 1, 1)
    scale = (1.0 / std).astype(np.float32).reshape(view)
    shift = mean.astype(np.float32).reshape(view)
    x = (x - shift) * scale
    xt = (xt - shift) * scale
    return Dataset(name, x, y, xt, yt, num_classes, mean, std, digests)
