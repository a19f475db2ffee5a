"""``npy:DIR``: a data set larger than memory, as a directory of .npy files read through mmap.

    DIR/x.npy        images, (N, C, H, W) or (N, H, W); uint8 (scaled to [0, 1]) or any
                     integer or float type (as float32), C-ordered
    DIR/y.npy        N integer class ids (read into memory: 8 bytes a sample)
    DIR/x_test.npy   optional, with y_test.npy; without them the fixed split of the other
    DIR/y_test.npy   formats holds out one fifth (index views: nothing is copied)
    DIR/stats.json   optional: {"mean": [...], "std": [...]} per channel, in the units of the
                     values as read (uint8 / 255); without it one streamed pass computes them

The images are opened with np.load(mmap_mode="r") and never read whole: the Dataset holds
MappedImages (mapped_images.py) that read and normalise the rows asked for, so each rank
reads only its own slices of each batch and of each evaluation. The checks of issue 13
(validate.py) hold: shapes and counts from the headers, labels in memory, pixels in the one
streamed pass (stream_scan.py), which also takes the statistics when stats.json is absent.
"""
from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from ..input_files import NotRegularFile, open_input
from .fingerprint import SPLIT_ARRAYS, array_digest
from .mapped_images import MappedImages, release
from .errors import DataError
from .stream_scan import scan
from .validate import as_labels, image_array, inferred_classes

FILES = ("x.npy", "y.npy", "x_test.npy", "y_test.npy")
STATS_FILE = "stats.json"
SPLIT_SEED = 20171218            # assemble.fixed_split's permutation


def open_npy(path: Path) -> np.ndarray:
    """A .npy file mapped read-only (no pickles), or a DataError naming it."""
    try:
        open_input(path).close()          # a FIFO or a directory is refused, not waited on
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except NotRegularFile as exc:
        raise DataError(str(exc)) from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except Exception as exc:        # a bad header, an object array, a truncated file
        raise DataError(f"{path}: not a readable .npy file ({type(exc).__name__}: {exc})") from None
    if not isinstance(a, np.memmap):
        raise DataError(f"{path}: not a .npy array file")
    if a.ndim > 1 and not a.flags.c_contiguous:
        raise DataError(f"{path}: stored in Fortran order; save np.ascontiguousarray(x) so rows "
                        "can be read one by one")
    return a


def read_stats(path: Path, channels: int):
    """(mean, std) from stats.json, checked: one finite number per channel, std > 0."""
    try:
        with open_input(path) as f:
            doc = json.loads(f.read(1 << 20).decode("utf-8"))
        mean = np.array(doc["mean"], dtype=np.float64).reshape(-1)
        std = np.array(doc["std"], dtype=np.float64).reshape(-1)
    except NotRegularFile as exc:
        raise DataError(str(exc)) from None
    except (OSError, ValueError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise DataError(f"{path}: expected {{\"mean\": [...], \"std\": [...]}} with one number "
                        f"per channel ({type(exc).__name__}: {exc})") from None
    if mean.shape != (channels,) or std.shape != (channels,):
        raise DataError(f"{path}: {len(mean)} means and {len(std)} standard deviations for "
                        f"images of {channels} channels")
    if not (np.isfinite(mean).all() and np.isfinite(std).all() and (std > 0).all()):
        raise DataError(f"{path}: means must be finite and standard deviations positive")
    return mean, std


def write_stats(path: Path, mean, std) -> None:
    text = json.dumps({"mean": [float(v) for v in mean], "std": [float(v) for v in std]})
    path.write_text(text + "\n")


def _split_rows(n: int):
    """The fixed split of assemble.fixed_split as row indices (train, test), in the
    permutation's order; int32 where they fit (they are held for the whole run)."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(n)
    if n < 2**31:
        perm = perm.astype(np.int32)
    n_test = max(1, n // 5)
    return perm[n_test:], perm[:n_test]


def _labels(path: Path, n: int, num_classes: int | None) -> np.ndarray:
    """The labels of ``path``, checked (validate.as_labels), as int64 in memory; the pages
    read through the mapping are released."""
    mapped = open_npy(path)
    try:
        return as_labels(mapped, n, str(path), num_classes)
    finally:
        release(mapped)


def load_dir(spec: str, directory: Path, num_classes: int | None):
    """The Dataset of an npy directory, its images mapped (see the module doc)."""
    from .assemble import Dataset
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory (npy:DIR names a directory holding "
                        "x.npy and y.npy)")
    has_test = [(directory / f).exists() for f in FILES[2:]]
    if has_test[0] != has_test[1]:
        raise DataError(f"{directory}: x_test.npy and y_test.npy must come together")
    paths = [directory / f for f in FILES]
    x = image_array(open_npy(paths[0]), str(paths[0]))
    y = _labels(paths[1], len(x), num_classes)
    if len(x) == 0:
        raise DataError(f"{paths[0]}: no samples")
    if has_test[0]:
        xt = image_array(open_npy(paths[2]), str(paths[2]))
        if xt.shape[1:] != x.shape[1:]:
            raise DataError(f"{paths[2]}: test images {xt.shape[1:]} and training images "
                            f"{x.shape[1:]} differ")
        if len(xt) == 0:
            raise DataError(f"{paths[2]}: no test samples (the test split is empty)")
        yt = _labels(paths[3], len(xt), num_classes)
        train_rows = test_rows = None
    else:
        xt = x
        if len(x) < 2:
            raise DataError(f"{paths[0]}: one sample cannot make a training and a test split")
        train_rows, test_rows = _split_rows(len(x))
    if num_classes is None:     # as npz: without a test file, from every label (before the split)
        num_classes = inferred_classes(y, f"{paths[1]}")
        if has_test[0] and len(yt) and yt.max() >= num_classes:
            raise DataError(f"{paths[3]}: label {int(yt.max())} out of range "
                            f"[0, {num_classes}) of the training labels")
    if train_rows is not None:
        y, yt = y[train_rows], y[test_rows]
    given = (directory / STATS_FILE).exists()
    stats = read_stats(directory / STATS_FILE, x.shape[1]) if given else None
    mask = None
    if train_rows is not None:
        mask = np.zeros(len(x), dtype=bool)
        mask[train_rows] = True
    scanned = scan(x, str(paths[0]), mask, want_stats=not given)
    if has_test[0]:
        scan(xt, str(paths[2]), want_stats=False)
    mean, std = stats if given else scanned
    view = (1, -1, 1, 1)
    scale = (1.0 / std).astype(np.float32).reshape(view)
    shift = mean.astype(np.float32).reshape(view)
    x_train = MappedImages(x, train_rows, shift, scale, paths[0])
    x_test = MappedImages(xt, test_rows, shift, scale, paths[2] if has_test[0] else paths[0])
    digests = {attr: array_digest(a) for attr, a in zip(SPLIT_ARRAYS, (x_train, y, x_test, yt))}
    # ranks that normalise differently train differently, even on equal files
    digests["x_train"] += f"; shift, scale {_crc(shift)}, {_crc(scale)}"
    return Dataset(spec, x_train, y, x_test, yt, num_classes, mean, std, digests)


def _crc(a: np.ndarray) -> str:
    return f"{zlib.crc32(np.ascontiguousarray(a).tobytes()):08x}"

