"""L1 and L2 weight penalties, attached to a layer with ``regularizer=``.

The penalty's gradient is added to the weight gradient in the layer's
backward, so it travels through gradient averaging like the data term
(every rank adds the same value, and the mean of equal values is that value).
"""
from __future__ import annotations

from ..backend import get_array_module


class L2:
    """0.5 * ``strength`` * sum(W^2), added to a layer's loss and its W gradient."""

    def __init__(self, strength: float):
        self.strength = float(strength)

    def loss(self, w):
        # a 0-d array where w lives (no host copy inside a training step)
        return 0.5 * self.strength * (w * w).sum()

    def add_grad(self, w, g) -> None:
        g += self.strength * w


class L1:
    """``strength`` * sum(|W|), added to a layer's loss and its W gradient."""

    def __init__(self, strength: float):
        self.strength = float(strength)

    def loss(self, w):
        return self.strength * get_array_module(w).abs(w).sum()

    def add_grad(self, w, g) -> None:
        g += self.strength * get_array_module(w).sign(w)
