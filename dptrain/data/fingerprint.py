"""A data set's fingerprint: what ranks compare at start-up to know they train on the same data.

Two copies of a data file at the same path on two nodes can differ (a stale copy, a partial
rsync); every rank then trains on its own data and the replicas mix silently. The fingerprint
is each split's shape and dtype, the class count, and a content digest of every array, taken
by the loader as the arrays are read, before normalisation (whose sums a CPU's SIMD width
may order differently on another node).

The digest must cost little beside loading: CRC-32 (zlib, ~2 GB/s, several times faster than
a cryptographic hash here) over all of an array's bytes up to ``FULL_BYTES``; beyond that, and
for memory-mapped arrays (which must not be read whole: npy_dir.py), over ``SAMPLE_ROWS``
rows at fixed, evenly spaced positions plus the first and last, so the cost is bounded
whatever the size. It
detects accidental differences, not adversarial ones (nothing here is a security boundary),
and a sampled array can differ in rows the sample skips (the fingerprint says "sampled").
"""
from __future__ import annotations

import zlib

import numpy as np

FULL_BYTES = 256 << 20          # digest every byte of arrays up to this size
SAMPLE_ROWS = 4096              # rows digested of a larger or memory-mapped array

SPLITS = (("x_train", "training images"), ("y_train", "training labels"),
          ("x_test", "test images"), ("y_test", "test labels"))
SPLIT_ARRAYS = tuple(attr for attr, _ in SPLITS)


def _crc(a: np.ndarray, crc: int = 0) -> int:
    """CRC-32 of an array's bytes in C order, without copying a contiguous array."""
    a = np.ascontiguousarray(a)
    return zlib.crc32(memoryview(a).cast("B"), crc) if a.size else crc


def array_digest(a: np.ndarray) -> str:
    """'crc32 <hex>' over every byte, or 'crc32 <hex> of N sampled rows' (see the module doc)."""
    # rows as stored, of an array-like that normalises them as it reads (mapped_images.py)
    read = getattr(a, "raw_rows", None) or (lambda index: np.asarray(a[index]))
    if not isinstance(a, np.memmap) and not hasattr(a, "raw_rows") and a.nbytes <= FULL_BYTES:
        return f"crc32 {_crc(a):08x}"
    n = len(a)
    rows = np.unique(np.linspace(0, n - 1, min(n, SAMPLE_ROWS)).astype(np.int64))
    crc = 0
    for start in range(0, len(rows), 256):          # fancy indexing reads only these rows
        crc = _crc(read(rows[start:start + 256]), crc)
    return f"crc32 {crc:08x} of {len(rows)} sampled rows"


def dataset_fields(ds) -> list[tuple[str, str]]:
    """(what, value) pairs that equal data give equal values for, in the order to report
    differences: the class count, each split's shape and dtype, then each split's content."""
    fields = [(f"the number of classes of {ds.name}", str(ds.num_classes))]
    for attr, what in SPLITS:
        a = getattr(ds, attr)
        fields.append((f"the shape of the {what} of {ds.name}",
                       f"{'x'.join(map(str, a.shape))} {a.dtype}"))
    digests = ds.digests or {}        # taken as read (datasets.py), else of the arrays held
    for attr, what in SPLITS:
        fields.append((f"the content of the {what} of {ds.name}",
                       digests.get(attr) or array_digest(getattr(ds, attr))))
    return fields
