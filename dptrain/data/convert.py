"""``dptrain data convert``: any data set we read, written as an ``npy:DIR`` directory.

The source is read as training reads it (IDX, CIFAR and npz files are read whole; their
readers bound what they allocate), checked with the same messages (validate.py; pixels in
bounded chunks, stream_scan.py), and written as it is stored: uint8 stays uint8, labels
become int64. The arrays go to a temporary directory beside the output, which is opened
as ``npy:DIR`` (the streamed pass takes the statistics, saved as stats.json, so later
opens of a uint8 set read no pixel) and then renamed into place: the output appears
complete or not at all, and a path that exists is never written over.

Without a test split in the source (mnist5k, synthetic, npz without x_test) only x.npy and
y.npy are written: npy:DIR then holds out the same fixed fifth as the source's reader
(mnist5k's 1,000 of 5,000 included).
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import readers
from .npy_dir import STATS_FILE, load_dir, write_stats
from .errors import DataError
from .stream_scan import scan
from .validate import as_labels, image_array, inferred_classes


def source_arrays(spec: str) -> dict:
    """The source's arrays as stored: x, y and, when it has a test split, x_test, y_test."""
    kind, _, arg = spec.partition(":")
    if kind in ("mnist", "fashion-mnist", "cifar10") and not (arg and Path(arg).is_dir()):
        raise DataError(f"{arg or '--dataset ' + kind}: no such directory (use {kind}:DIR)")
    if kind in ("mnist", "fashion-mnist"):
        parts = readers.read_idx_pair(Path(arg), "train") + readers.read_idx_pair(Path(arg), "test")
    elif kind == "cifar10":
        parts = readers.read_cifar10(Path(arg))
    elif kind == "npz" and arg:
        parts = readers.read_npz(Path(arg))
    elif kind == "mnist5k" and not arg:
        parts = readers.read_mnist5k()
    elif kind == "synthetic":
        from .datasets import _synthetic
        parts = _synthetic(arg)
    elif kind == "npy":
        raise DataError(f"--dataset {spec}: already an npy directory (copy it instead)")
    else:
        raise DataError(f"--dataset {spec}: convert reads mnist:DIR, fashion-mnist:DIR, "
                        "cifar10:DIR, npz:FILE, mnist5k or synthetic[:CxHxW[:N]]")
    names = ("x", "y", "x_test", "y_test")
    return {name: a for name, a in zip(names, parts) if a is not None}


def check_source(spec: str, arrays: dict, num_classes: int | None) -> dict:
    """The arrays checked as datasets.load checks them (images not converted: 4-D views,
    pixels scanned in chunks), labels as int64."""
    checked = {}
    for split, what in (("", "training"), ("_test", "test")):
        if "x" + split not in arrays:
            continue
        x = image_array(np.asarray(arrays["x" + split]), f"{spec} {what} images")
        scan(x, f"{spec} {what} images", want_stats=False)
        checked["x" + split] = x
        checked["y" + split] = as_labels(arrays["y" + split], len(x), f"{spec} {what} labels",
                                         num_classes)
    if "x_test" in checked and checked["x"].shape[1:] != checked["x_test"].shape[1:]:
        raise DataError(f"{spec}: training images {checked['x'].shape[1:]} and test images "
                        f"{checked['x_test'].shape[1:]} differ")
    if num_classes is None:
        inferred_classes(checked["y"], f"{spec} training labels")
    return checked


def _save(path: Path, a: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, np.ascontiguousarray(a), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


def convert(spec: str, output, num_classes: int | None = None) -> str:
    """Write ``spec`` as an npy directory at ``output`` (which must not exist); a line
    saying what was written."""
    out = Path(output)
    if os.path.lexists(out):
        raise DataError(f"--output {out}: exists; data convert never writes over a file or "
                        "directory (give a new path)")
    if not out.parent.is_dir():
        raise DataError(f"--output {out}: no such directory {out.parent}")
    arrays = check_source(spec, source_arrays(spec), num_classes)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    except OSError as exc:
        raise DataError(f"--output {out}: cannot write in {out.parent} ({exc.strerror})") from None
    try:
        umask = os.umask(0o22)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)           # mkdtemp's 0700 is for while it is written
        for name, a in arrays.items():
            _save(tmp / f"{name}.npy", a)
        ds = load_dir(f"npy:{out}", tmp, num_classes)
        write_stats(tmp / STATS_FILE, ds.mean, ds.std)
        if os.path.lexists(out):
            raise DataError(f"--output {out}: appeared while converting; left as it is")
        os.rename(tmp, out)                 # onto a directory with files in it, this fails
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return (f"wrote {out}: {len(ds.x_train):,} training and {len(ds.x_test):,} test images of "
            f"{'x'.join(map(str, ds.input_shape))} ({arrays['x'].dtype}), {ds.num_classes} classes")
