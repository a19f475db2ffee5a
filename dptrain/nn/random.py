"""Counter-based random numbers keyed by (seed, stream, step, global sample index).

A sample's dropout mask or augmentation then does not depend on which rank
holds it or where it sits in the local batch: the key to rank-count invariance.
SplitMix64 finalisers over uint64 arrays; vectorised, numpy or cupy.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)


def mix(z):
    """SplitMix64 finaliser: a bijective scramble of uint64 values."""
    with np.errstate(over="ignore"):
        z = z + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def stream_key(*parts: int) -> np.uint64:
    """Fold small integers (seed, stream id, step) into one 64-bit key."""
    key = np.uint64(0)
    for p in parts:
        key = mix(np.asarray(key ^ np.uint64(p & 0xFFFFFFFFFFFFFFFF), dtype=np.uint64))[()]
    return np.uint64(key)


def step_key(prefix: np.uint64, step):
    """``stream_key(*parts, step)`` from ``prefix = stream_key(*parts)``. ``step`` may be a
    0-d uint64 device array (a CUDA graph's step counter, filled before each replay): the key
    then stays on the device, the same bits as the host key of that step, so a replayed
    step draws fresh dropout masks instead of the ones of the step it was captured at."""
    if isinstance(step, (int, np.integer)):
        return np.uint64(mix(np.asarray(np.uint64(prefix) ^ np.uint64(int(step) & 0xFFFFFFFFFFFFFFFF),
                                        dtype=np.uint64))[()])
    return mix(step ^ np.uint64(prefix))


def uniform(key, sample_ids, per_sample: int):
    """Uniform [0, 1) array (len(sample_ids), per_sample), row i a function of sample_ids[i] only.
    ``key`` is a uint64 or a 0-d uint64 array on the device (step_key)."""
    xp = get_array_module(sample_ids)
    ids = xp.asarray(sample_ids, dtype=xp.uint64).reshape(-1, 1)
    row = mix(ids ^ (xp.uint64(key) if isinstance(key, (int, np.integer)) else key))
    cols = xp.arange(per_sample, dtype=xp.uint64).reshape(1, -1)
    bits = mix(row * xp.uint64(0x100000001B3) + cols)
    return (bits >> xp.uint64(11)).astype(xp.float64) * (1.0 / (1 << 53))
