"""Flatten: (N, ...) -> (N, prod(...)), C-order, so NCHW flattens channel-major."""
from __future__ import annotations

import math

from .layer import Layer


class Flatten(Layer):
    """(B, C, H, W) -> (B, C*H*W), between convolutional and Dense layers."""

    def output_shape(self, in_shape):
        return (math.prod(in_shape),)

    def forward(self, x, train):
        self._shape = x.shape
        return x.reshape(x.shape[0], math.prod(x.shape[1:]))   # -1 fails on an empty batch

    def backward(self, dy):
        return dy.reshape(self._shape)
