"""One pass over a memory-mapped image array in chunks of bounded size: every pixel checked
(finite, within float32, as validate.as_images does for arrays in memory) and, when asked,
the per-channel mean and standard deviation of the training rows in float64.

uint8 images are counted per channel and value (a 256-bin histogram), from which the mean
and standard deviation of the values as read (uint8 / 255 in float32) follow exactly, with
math.fsum: the result does not depend on the chunking, nor on a CPU's SIMD width. Other
types are merged chunk by chunk (Chan et al.'s pairwise update of mean and sum of squared
deviations), each chunk's sums in float64. A chunk's working arrays stay under
CHUNK_BYTES, whatever the file's size.
"""
from __future__ import annotations

import math

import numpy as np

from .mapped_images import as_float32, release
from .errors import DataError

CHUNK_BYTES = 16 << 20


def _rows_per_chunk(raw: np.ndarray) -> int:
    row = int(np.prod(raw.shape[1:], dtype=np.int64))
    return max(1, CHUNK_BYTES // (8 * row))      # the widest working copy: intp or float64


class _Histogram:
    """Per-channel counts of the 256 uint8 values."""

    def __init__(self, channels: int):
        self.counts = np.zeros((channels, 256), dtype=np.int64)

    def add(self, chunk: np.ndarray) -> None:
        for c in range(chunk.shape[1]):
            self.counts[c] += np.bincount(chunk[:, c].reshape(-1), minlength=256)

    def result(self):
        values = (np.arange(256, dtype=np.float32) / 255.0).astype(np.float64)
        mean, std = [], []
        for counts in self.counts:
            n = int(counts.sum())
            m = math.fsum(counts * values) / n
            mean.append(m)
            std.append(math.sqrt(math.fsum(counts * (values - m) ** 2) / n))
        return np.array(mean), np.array(std)


class _Moments:
    """Per-channel count, mean and sum of squared deviations, merged chunk by chunk."""

    def __init__(self, channels: int):
        self.n = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        nb = values.size // values.shape[1]
        mean_b = values.mean(axis=(0, 2, 3), dtype=np.float64)
        dev = values.astype(np.float64) - mean_b.reshape(1, -1, 1, 1)
        m2_b = np.einsum("ncij,ncij->c", dev, dev)
        n = self.n + nb
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (nb / n)
        self.m2 = self.m2 + m2_b + delta ** 2 * (self.n * nb / n)
        self.n = n

    def result(self):
        return self.mean.copy(), np.sqrt(self.m2 / self.n)


def _check_finite(raw_chunk: np.ndarray, values: np.ndarray, first_row: int, where: str):
    finite = np.isfinite(values)
    if finite.all():
        return
    flat = ~finite.reshape(len(values), -1)
    i = int(np.argmax(flat.any(axis=1)))
    value = raw_chunk[i].reshape(-1)[int(np.argmax(flat[i]))]
    kind = "non-finite" if not np.isfinite(value) else "beyond float32"
    raise DataError(f"{where}: sample {first_row + i} has a {kind} pixel value ({value})")


def scan(raw: np.ndarray, where: str, stats_rows: np.ndarray | None = None,
         want_stats: bool = True):
    """Check every pixel of ``raw`` (N, C, H, W) and return (mean, std) per channel over the
    rows where the boolean mask ``stats_rows`` holds (None: all), or None without
    ``want_stats``. A uint8 array whose statistics are not wanted needs no pass at all."""
    if raw.dtype == np.uint8 and not want_stats:
        return None
    acc = _Histogram(raw.shape[1]) if raw.dtype == np.uint8 else _Moments(raw.shape[1])
    step = _rows_per_chunk(raw)
    for lo in range(0, len(raw), step):
        chunk = np.array(raw[lo:lo + step])          # copied: the mapping's pages are released
        release(raw)
        if raw.dtype.kind == "f":
            values = as_float32(chunk)
            _check_finite(chunk, values, lo, where)
        if not want_stats:
            continue
        keep = chunk if stats_rows is None else chunk[stats_rows[lo:lo + step]]
        acc.add(keep if raw.dtype == np.uint8 else as_float32(keep))
    if not want_stats:
        return None
    mean, std = acc.result()
    std[std < 1e-8] = 1.0
    return mean, std
