"""Inverted dropout: at training time keep each unit with probability 1 - p and scale by 1/(1 - p).

When the model passes a BatchContext, each sample's mask is drawn from a
counter-based generator keyed by (seed, layer, step, global sample index), so
the masks do not depend on the rank count. Without one, a private generator is used.
"""
from __future__ import annotations

import math

import numpy as np

from ..backend import get_array_module
from . import random as keyed
from .layer import Layer


class Dropout(Layer):
    """Inverted dropout with probability ``p`` at training time; masks keyed by each
    sample's global index, so any rank count draws the same ones."""

    def __init__(self, p: float = 0.5, seed: int = 0):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self._rng = np.random.default_rng(seed)

    def _uniform(self, x):
        xp = get_array_module(x)
        per_sample = math.prod(x.shape[1:])
        ctx = self.context
        if ctx is not None:
            # the step may be a device counter (--cuda-graph): the key is then computed there
            key = keyed.step_key(keyed.stream_key(ctx.seed, 0xD5 + self.index), ctx.step)
            ids = xp.asarray(ctx.sample_ids)
            return keyed.uniform(key, ids, per_sample).reshape(x.shape)
        return xp.asarray(self._rng.random(x.shape))

    def forward(self, x, train):
        if not train or self.p == 0.0:
            self._mask = None
            return x
        self._mask = (self._uniform(x) >= self.p).astype(x.dtype) / (1.0 - self.p)
        return x * self._mask

    def backward(self, dy):
        return dy if self._mask is None else dy * self._mask

    def __repr__(self):
        return f"Dropout({self.p})"
