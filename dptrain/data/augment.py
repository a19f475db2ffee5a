"""Augmentation keyed by global sample index: padded random crop, shift, horizontal flip.

The offsets and flips of a sample depend only on (seed, step, sample index),
so a sample is augmented the same way whichever rank holds it.
"""
from __future__ import annotations

import numpy as np

from ..nn import random as keyed

AUGMENTATIONS = ("crop", "flip", "shift")


def parse(spec: str | None) -> tuple:
    if not spec or spec == "none":
        return ()
    names = tuple(s.strip() for s in spec.split(",") if s.strip())
    for n in names:
        if n not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {n!r} (choose {', '.join(AUGMENTATIONS)} or none)")
    return names


def _translate(x, ids, key, pad: int):
    """Pad by ``pad`` and crop back to the original size at a keyed offset per sample."""
    n, c, h, w = x.shape
    u = keyed.uniform(key, ids, 2)
    dy = np.minimum((u[:, 0] * (2 * pad + 1)).astype(np.int64), 2 * pad)
    dx = np.minimum((u[:, 1] * (2 * pad + 1)).astype(np.int64), 2 * pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    rows = dy[:, None] + np.arange(h)[None, :]          # (N, H)
    cols = dx[:, None] + np.arange(w)[None, :]          # (N, W)
    out = xp[np.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]]   # (N, H, W, C)
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def apply(x: np.ndarray, ids, names: tuple, seed: int, step: int,
          crop_pad: int = 4, shift_max: int = 2) -> np.ndarray:
    """Augment a host batch x (N, C, H, W) whose rows are the global samples ``ids``."""
    if not names or len(x) == 0:
        return x
    ids = np.asarray(ids)
    for k, name in enumerate(names):
        key = keyed.stream_key(seed, 0xA0 + k, step)
        if name == "crop":
            x = _translate(x, ids, key, crop_pad)
        elif name == "shift":
            x = _translate(x, ids, key, shift_max)
        elif name == "flip":
            flip = keyed.uniform(key, ids, 1)[:, 0] < 0.5
            x = np.where(flip[:, None, None, None], x[:, :, :, ::-1], x)
    return x
