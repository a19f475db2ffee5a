"""Evaluation: loss and accuracy of a model over a whole split, in inference mode."""
from __future__ import annotations

import numpy as np

from .. import backend
from ..nn import SoftmaxCrossEntropy

# Evaluation batches when none is given. A GPU wants large ones. On the CPU a batch whose
# activations stay in the caches and in the memory the allocator keeps (allocator.py) is
# faster: thesis-cnn forward over 10,000 test digits, 1 thread, the 2-core dev VM
# (2026-12-05): 1.31 s in batches of 1000, 1.09 s of 256, 0.96 s of 128, 0.95 s of 64.
GPU_BATCH, CPU_BATCH = 1000, 128


def device_batch(configured: int | None) -> int:
    """--eval-batch-size, or the device's default."""
    return configured or (CPU_BATCH if backend.xp is np else GPU_BATCH)


def evaluate_sums(model, x, y, batch_size: int | None = None):
    """(sum of losses, number correct, count) over x, y; sums so ranks can add them up."""
    xp = backend.xp
    batch_size = device_batch(batch_size)
    loss = SoftmaxCrossEntropy()
    total_loss, correct = 0.0, 0            # device scalars, read once at the end
    for start in range(0, len(x), batch_size):
        xb = xp.asarray(x[start:start + batch_size], dtype=model.dtype)
        yb = xp.asarray(y[start:start + batch_size])
        logits = model.forward(xb, train=False)
        total_loss = total_loss + loss.forward(logits, yb, normalizer=1.0)
        correct = correct + (logits.argmax(axis=1) == yb).sum()
    return float(total_loss), int(correct), len(x)


def evaluate(model, x, y, batch_size: int | None = None) -> dict:
    total, correct, n = evaluate_sums(model, x, y, batch_size)
    return {"loss": total / max(n, 1), "accuracy": correct / max(n, 1), "samples": n}



def per_sample_stats(model, x, y, batch_size: int | None = None, start: int = 0, stop=None,
                     rows=None):
    """Per sample of rows start..stop (default: all) of x, or of x[rows]: loss, gradient
    bound ||softmax - onehot||^2 (seed 003, eq. 80-87) and whether the prediction is right,
    in inference mode. Host arrays, copied from the device once for the whole split. Rows
    are read batch by batch (a memory-mapped x is never read whole)."""
    xp = backend.xp
    batch_size = device_batch(batch_size)
    loss = SoftmaxCrossEntropy()
    losses, bounds, right = [], [], []
    stop = (len(x) if rows is None else len(rows)) if stop is None else stop
    for lo in range(start, stop, batch_size):
        hi = min(lo + batch_size, stop)
        at = slice(lo, hi) if rows is None else rows[lo:hi]
        xb = xp.asarray(x[at], dtype=model.dtype)
        yb = xp.asarray(y[at])
        logits = model.forward(xb, train=False)
        loss.forward(logits, yb)
        losses.append(loss.sample_losses)
        bounds.append(gradient_bound(loss.probs, yb))
        right.append(logits.argmax(axis=1) == yb)
    if not losses:
        return np.zeros(0), np.zeros(0), np.zeros(0, dtype=bool)
    return tuple(backend.to_numpy(xp.concatenate(parts)) for parts in (losses, bounds, right))


def gradient_bound(probs, labels):
    """||softmax - onehot||^2 = sum p^2 - 2 p_y + 1 per sample: the norm of the loss gradient
    with respect to the last layer's pre-activations, an upper bound of the full gradient's."""
    xp = backend.get_array_module(probs)
    p_y = probs[xp.arange(len(labels)), labels]
    return (probs * probs).sum(axis=1) - 2 * p_y + 1


def evaluate_shares(model, comm, x, y, batch_size: int, guard):
    """Evaluate a split over the ranks: each takes a contiguous share, the sums are reduced.

    Returns (metrics, this rank's per-sample losses, its gradient bounds, every rank's share
    size); the per-sample arrays are for samplers that want the whole split's losses.
    """
    from ..data import rank_slice
    n = len(x)
    sizes = [len(rank_slice(np.arange(n), r, comm.size)) for r in range(comm.size)]
    start = sum(sizes[:comm.rank])               # this rank's share: rows start..start+size
    losses, bounds, right = per_sample_stats(model, x, y, batch_size, start,
                                             start + sizes[comm.rank])
    sums = np.array([losses.sum(), right.sum(), len(losses)], dtype=np.float64)
    with guard():
        comm.allreduce(sums)
    metrics = {"loss": sums[0] / max(sums[2], 1), "accuracy": sums[1] / max(sums[2], 1),
               "samples": int(sums[2])}
    return metrics, losses, bounds, sizes
