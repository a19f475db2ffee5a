"""Images of a memory-mapped .npy file, normalised row by row as they are read.

The array-like a Dataset holds for ``npy:DIR`` (npy_dir.py) in place of an in-memory
float32 array: indexing it (an integer, a slice, an array of integers or booleans) reads
those rows of the file, converts them as the in-memory readers do (uint8 / 255, other
types as float32) and normalises them with the training split's statistics: the same
float32 operations, element by element, as datasets.py applies to a whole array, so the
same rows give the same bits. Nothing reads the whole file: ``np.asarray`` of the whole
array is refused, so a consumer that would copy it fails in the tests instead of using
the memory.

Pages read through a mapping count in the process's resident set until they are unmapped
(or the kernel reclaims them under pressure), so after every read the mapping is told it
no longer needs them (MADV_DONTNEED): the file's pages stay in the page cache, shared by
every rank on the node, and the resident set stays at one batch's worth.
"""
from __future__ import annotations

import mmap

import numpy as np


GROUP_BYTES = 8 << 20           # file pages mapped at a time while rows are read
FAULT_AROUND_BYTES = 64 << 10    # Linux maps up to this much around a faulting page


def release(mapped) -> None:
    """Drop the pages of ``mapped`` (an np.memmap or a view of one) from this process's
    resident set; the page cache keeps them. A no-op where madvise is missing."""
    mm = getattr(mapped, "_mmap", None)
    if mm is not None and hasattr(mm, "madvise") and hasattr(mmap, "MADV_DONTNEED"):
        mm.madvise(mmap.MADV_DONTNEED)


def as_float32(raw: np.ndarray) -> np.ndarray:
    """Pixel values as datasets.py reads them: uint8 scaled to [0, 1], others cast."""
    with np.errstate(over="ignore", invalid="ignore"):
        out = raw.astype(np.float32)
    if raw.dtype == np.uint8:
        out /= np.float32(255.0)          # in place: the bits of astype(float32) / 255.0
    return out


class MappedImages:
    """Rows ``rows`` (None: all, in file order) of a mapped (N, C, H, W) array, normalised
    as ``(as_float32(x) - shift) * scale`` with float32 ``shift``/``scale`` of shape
    (1, C, 1, 1)."""

    dtype = np.dtype(np.float32)
    ndim = 4

    def __init__(self, raw: np.ndarray, rows, shift: np.ndarray, scale: np.ndarray, path):
        self.raw, self.rows, self.path = raw, rows, path
        self.shift, self.scale = shift, scale
        n = len(raw) if rows is None else len(rows)
        self.shape = (n,) + tuple(raw.shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def nbytes(self) -> int:
        """What the rows would take once read and normalised."""
        return int(np.prod(self.shape, dtype=np.int64)) * 4

    def file_rows(self, key) -> np.ndarray | slice:
        """The rows of the file that ``self[key]`` reads (a slice when they are contiguous)."""
        if isinstance(key, slice):
            if self.rows is None:
                return slice(*key.indices(len(self)))
            return self.rows[key]
        index = np.asarray(key)
        if index.dtype == bool:
            if index.shape != (len(self),):
                raise IndexError(f"boolean index of shape {index.shape} for {len(self)} rows")
            index = np.flatnonzero(index)
        elif index.dtype.kind not in "iu":
            raise IndexError(f"{self.path}: rows are indexed by integers, slices or booleans, "
                             f"not {index.dtype}")
        index = np.where(index < 0, index + len(self), index)
        if index.size and (index.min() < 0 or index.max() >= len(self)):
            raise IndexError(f"row index out of range for {len(self)} rows")
        return index if self.rows is None else self.rows[index]

    def raw_rows(self, key) -> np.ndarray:
        """Rows as stored in the file (not converted): what content digests are taken of."""
        rows = self.file_rows(key)
        if isinstance(rows, slice):
            out = np.array(self.raw[rows])     # copied: the mapping's pages are released
            release(self.raw)
            return out
        # Rows scattered over the file: each fault maps up to 16 neighbouring cached pages
        # too (the kernel's fault-around), so a batch of 1,000 random rows of 3 KB held
        # 64 MB of the file; read a group at a time and release after each.
        out = np.empty((len(rows),) + self.raw.shape[1:], self.raw.dtype)
        group = max(1, GROUP_BYTES // (self.raw[0].nbytes + FAULT_AROUND_BYTES))
        for lo in range(0, len(rows), group):
            out[lo:lo + group] = self.raw[rows[lo:lo + group]]
            release(self.raw)
        return out

    def __getitem__(self, key):
        if isinstance(key, tuple):
            if len(key) > 1:
                raise IndexError(f"{self.path}: only rows can be selected, not {key!r}")
            key = key[0]
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        out = as_float32(self.raw_rows(key))
        out -= self.shift                   # in place, one batch-sized array at a time
        out *= self.scale
        return out

    def __array__(self, dtype=None, copy=None):
        raise TypeError(f"{self.path}: a memory-mapped data set is read by rows (x[ids], "
                        "x[start:stop]), never converted whole")

    def __repr__(self):
        return f"MappedImages({self.path}, shape {self.shape}, float32, normalised on read)"
