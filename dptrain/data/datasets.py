"""Data sets by name, loaded into memory as NCHW float32 in [0, 1] then normalised.

    mnist5k              5,000 real MNIST digits (default), 4,000 train / 1,000 test
    mnist:DIR            IDX files, raw or .gz
    fashion-mnist:DIR    same file names as MNIST
    cifar10:DIR          the python or the binary batches (cifar.py)
    npz:FILE             arrays x, y and optionally x_test, y_test
    npy:DIR              x.npy, y.npy (x_test.npy, y_test.npy), memory-mapped (npy_dir.py)
    synthetic[:CxHxW[:N]] generated, learnable, for benchmarks and tests
    arrays:NAME          a script's own arrays, registered in this process (in_memory.py)

Normalisation uses per-channel mean and standard deviation of the training split.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from . import readers
from .assemble import Dataset, assemble, fixed_split
from .errors import DataError
from .validate import as_images, as_labels, check_fits, inferred_classes


def _synthetic(arg: str):
    """Class prototypes plus noise: learnable, deterministic, any shape."""
    parts = arg.split(":") if arg else []
    if len(parts) > 2:
        raise DataError(f"synthetic:{arg}: expected synthetic[:CxHxW[:N]], got {len(parts)} fields")
    try:
        shape = tuple(int(v) for v in parts[0].split("x")) if parts and parts[0] else (1, 28, 28)
        n = int(parts[1]) if len(parts) > 1 else 5000
    except ValueError:
        raise DataError(f"synthetic:{arg}: expected synthetic[:CxHxW[:N]]") from None
    if len(shape) != 3 or min(shape) <= 0 or n < 2:
        raise DataError(f"synthetic:{arg}: expected a positive CxHxW shape and N >= 2")
    # the samples, the random draw and the normalised copy, all float32
    check_fits(f"synthetic:{arg} ({n:,} samples of {'x'.join(map(str, shape))})",
               3 * 4.0 * n * float(np.prod(shape, dtype=np.float64)))
    rng = np.random.default_rng(1234)
    protos = rng.random((10,) + shape).astype(np.float32)
    y = rng.integers(0, 10, n)
    x = np.clip(0.6 * protos[y] + 0.4 * rng.random((n,) + shape, dtype=np.float32), 0, 1)
    return x, y


def load(spec: str, num_classes: int | None = None) -> Dataset:
    """Load a data set by the names README.md lists; raises DataError with the culprit named.
    ``num_classes`` (--num-classes) fixes the model's classes instead of the data set's own:
    10 for the named sets, 1 + the largest training label (without gaps) for npz."""
    kind, _, arg = spec.partition(":")
    if kind == "arrays":
        from .in_memory import load_registered
        return load_registered(spec, num_classes)
    given = num_classes
    num_classes = given or 10
    if kind == "mnist5k" and not arg:
        x, y = readers.read_mnist5k()
        parts = fixed_split(x, y, 1000)
    elif kind in ("mnist", "fashion-mnist"):
        if not arg:
            raise DataError(f"--dataset {spec}: give the directory, as {kind}:DIR")
        d = Path(arg)
        if not d.is_dir():
            raise DataError(f"{d}: no such directory")
        parts = readers.read_idx_pair(d, "train") + readers.read_idx_pair(d, "test")
    elif kind == "cifar10":
        if not arg or not Path(arg).is_dir():
            raise DataError(f"{arg or '--dataset cifar10'}: no such directory (use cifar10:DIR)")
        parts = readers.read_cifar10(Path(arg))
    elif kind == "npz":
        if not arg:
            raise DataError("--dataset npz: give the file, as npz:FILE")
        x, y, xt, yt = readers.read_npz(Path(arg))
        num_classes = given
        if xt is None:
            x = as_images(x, f"{spec} images")   # before the split: sample = index in the file
            # checked before the split, which would drop or fail on the extra ones
            y = as_labels(y, len(x), f"{spec} labels", num_classes)
            if num_classes is None:          # from every label: a class may fall in the test part
                num_classes = inferred_classes(y, f"{spec} labels")
            parts = fixed_split(x, y, max(1, len(x) // 5))
        else:
            parts = (x, y, xt, yt)
    elif kind == "npy":
        if not arg:
            raise DataError("--dataset npy: give the directory, as npy:DIR")
        from .npy_dir import load_dir
        return load_dir(spec, Path(arg), given)
    elif kind == "synthetic":
        x, y = _synthetic(arg)
        parts = fixed_split(x, y, max(1, len(x) // 5))
    else:
        from ..suggest import did_you_mean
        kinds = ("mnist5k", "mnist", "fashion-mnist", "cifar10", "npz", "npy", "synthetic")
        raise DataError(f"unknown dataset {spec!r}{did_you_mean(kind, kinds)} (choose mnist5k, mnist:DIR, fashion-mnist:DIR, "
                        "cifar10:DIR, npz:FILE, npy:DIR or synthetic)")
    return assemble(spec, *parts, num_classes=num_classes)
