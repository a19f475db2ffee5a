"""Deterministic global batches and how ranks split them.

Each step's global batch is a fixed set of sample indices, a function of
(seed, epoch) only. Rank r of P takes a contiguous slice (sizes differ by at
most one when P does not divide the batch); the loss is normalised by the
global batch size so the sum over ranks is the exact global-batch mean.
The last, partial batch of an epoch is kept, on every rank count alike.
"""
from __future__ import annotations

import numpy as np


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch, 0x5EED]).permutation(n)


def steps_per_epoch(n: int, batch_size: int, drop_last: bool = False) -> int:
    """Global batches in an epoch of ``n`` samples (the last one short unless ``drop_last``)."""
    return n // batch_size if drop_last else -(-n // batch_size)


def global_batches(n: int, batch_size: int, seed: int, epoch: int, drop_last: bool = False):
    """The list of index arrays that make up one epoch, identical on every rank."""
    order = epoch_order(n, seed, epoch)
    steps = steps_per_epoch(n, batch_size, drop_last)
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def rank_slice(batch: np.ndarray, rank: int, size: int) -> np.ndarray:
    """Contiguous share of rank ``rank``: the first len % size ranks get one more sample."""
    n = len(batch)
    base, extra = divmod(n, size)
    start = rank * base + min(rank, extra)
    return batch[start:start + base + (1 if rank < extra else 0)]
