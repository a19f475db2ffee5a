"""Checks of a data set's arrays at load time, each a DataError naming the split (with its file)
and the sample: dtype and shape, non-finite pixels, labels that are not class ids, count
mismatches, empty splits, class ids with gaps, and sizes that cannot fit in memory."""
from __future__ import annotations

import os

import numpy as np

from .errors import DataError


def available_memory() -> int:
    """Bytes this process could still allocate: MemAvailable, else physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_fits(what: str, nbytes: float) -> None:
    """Refuse, before allocating, something larger than the memory still available."""
    free = available_memory()
    if nbytes > free:
        raise DataError(f"{what} would need about {nbytes / 2**30:,.1f} GiB of memory, more than "
                        f"the {free / 2**30:,.1f} GiB available")


def _first_bad_sample(bad: np.ndarray) -> int:
    return int(np.argmax(bad.reshape(len(bad), -1).any(axis=1)))


def image_array(x, where: str):
    """(N, H, W) or (N, C, H, W) real numbers as (N, C, H, W), checked but not converted (a
    view: a memory-mapped array stays mapped)."""
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4:
        raise DataError(f"{where}: images must be (N, H, W) or (N, C, H, W), got shape {x.shape}")
    if x.dtype.kind not in "uif":
        raise DataError(f"{where}: images must be real numbers, got dtype {x.dtype}")
    if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4) and x.shape[1] == x.shape[2]:
        # (N, 32, 32, 3) read as 32 channels of 32x3 images would train, on nonsense
        raise DataError(f"{where}: images of shape {x.shape} look channels-last (N, H, W, C); "
                        "dptrain takes (N, C, H, W): store x.transpose(0, 3, 1, 2)")
    if 0 in x.shape[1:]:
        raise DataError(f"{where}: images of shape {x.shape[1:]} hold no pixels")
    return x


def as_images(x, where: str) -> np.ndarray:
    """(N, H, W) or (N, C, H, W) numbers as float32 (uint8 scaled to [0, 1]), all finite."""
    x = image_array(np.asarray(x), where)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0
    with np.errstate(over="ignore", invalid="ignore"):
        out = x.astype(np.float32, copy=False)
    if x.dtype.kind != "f":
        return out                         # integers are finite, and within float32's range
    finite = np.isfinite(out)
    if not finite.all():
        i = _first_bad_sample(~finite)
        value = x[i].reshape(-1)[np.argmax(~finite[i].reshape(-1))]
        kind = "non-finite" if not np.isfinite(value) else "beyond float32"
        raise DataError(f"{where}: sample {i} has a {kind} pixel value ({value})")
    return out


def as_labels(y, n: int, where: str, num_classes: int | None) -> np.ndarray:
    """N integer class ids in [0, num_classes) as int64 (num_classes None: not bounded above)."""
    y = np.asarray(y)
    if y.dtype.kind not in "uifb":
        raise DataError(f"{where}: labels must be integer class ids, got dtype {y.dtype}")
    if y.ndim != 1:
        raise DataError(f"{where}: labels must be a 1-D array, got shape {y.shape}")
    if len(y) != n:
        raise DataError(f"{where}: {len(y)} labels for {n} images")
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (np.mod(y, 1) != 0) | (np.abs(y) >= 2.0 ** 62)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"{where}: sample {i}: label {y[i]} is not an integer class id")
    if y.dtype == np.uint64 and len(y) and y.max() >= 2 ** 62:
        raise DataError(f"{where}: label {int(y.max())} is not a class id")
    y = y.astype(np.int64)
    bad = (y < 0) if num_classes is None else (y < 0) | (y >= num_classes)
    if bad.any():
        i = int(np.argmax(bad))
        raise DataError(f"{where}: sample {i}: label {int(y[i])} out of range "
                        f"[0, {num_classes if num_classes else 'inf'})")
    return y


def inferred_classes(y: np.ndarray, where: str) -> int:
    """1 + the largest label, provided every class id below it occurs: a gap usually means a
    stray label (one 99 among digits would build a 100-class model)."""
    k = int(y.max()) + 1
    if k < 2:
        raise DataError(f"{where}: labels must cover at least two classes")
    present = np.unique(y)                      # sorted; at most N of them, whatever k is
    if len(present) < k:
        expected = np.arange(min(k, len(present) + 5))
        gaps = np.setdiff1d(expected, present)[:5]
        shown = ", ".join(map(str, gaps)) + ", ..."
        raise DataError(f"{where}: {k - len(present)} of the class ids 0..{k - 1} never occur "
                        f"({shown}); a stray label? give --num-classes {k} if the model should "
                        f"have {k} classes")
    return k
