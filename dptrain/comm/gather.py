"""Gathering arrays whose length differs by rank (slices of a global batch)."""
from __future__ import annotations

import numpy as np


def allgather_concat(comm, local, sizes) -> np.ndarray:
    """Concatenate every rank's ``local`` (1-D, rank r holding sizes[r] values), in rank order.

    The buffer-based Allgather needs equal lengths, so shorter pieces are padded and the
    padding dropped again.
    """
    local = np.asarray(local, dtype=np.float64)
    width = max(max(sizes), 1)
    padded = np.zeros(width)
    padded[:len(local)] = local
    rows = comm.allgather(padded)
    return np.concatenate([rows[r, :sizes[r]] for r in range(len(sizes))])
