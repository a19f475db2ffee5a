"""Fully connected layer: y = x W + b, x (B, n_in), W (n_in, n_out)."""
from __future__ import annotations

from ..backend import get_array_module
from . import init as initializers
from .layer import Layer


class Dense(Layer):
    """Fully connected: (B, n_in) -> (B, n_out), y = x W + b. ``init``: an initialiser of
    nn/init.py (he, glorot, lecun, ...); ``regularizer``: nn.L1 or nn.L2 on W."""

    # False under FC replication (parallel/fc_replication.py): dW and db are computed from
    # the gathered global batch instead, so the local ones would be wasted work.
    compute_param_grads = True

    def __init__(self, n_in: int, n_out: int, init: str = "he", bias: bool = True,
                 regularizer=None):
        super().__init__()
        self.n_in, self.n_out = int(n_in), int(n_out)
        self.init, self.bias, self.regularizer = init, bias, regularizer
        self._x = None

    def initialize(self, rng) -> None:
        w = initializers.get(self.init)(rng, (self.n_in, self.n_out), self.n_in, self.n_out)
        self._add_param("W", w)
        if self.bias:
            self._add_param("b", [0.0] * self.n_out)

    def output_shape(self, in_shape):
        if in_shape != (self.n_in,):
            raise ValueError(f"Dense expects input ({self.n_in},), got {in_shape}")
        return (self.n_out,)

    def flops(self, in_shape) -> int:
        return 2 * self.n_in * self.n_out + (self.n_out if self.bias else 0)

    def forward(self, x, train):
        self._x = x
        y = x @ self.params["W"]
        if self.bias:
            y += self.params["b"]
        return y

    def backward(self, dy):
        xp = get_array_module(dy)
        if self.compute_param_grads:
            xp.matmul(self._x.T, dy, out=self.grads["W"])
            if self.bias:
                dy.sum(axis=0, out=self.grads["b"])
            self._add_regularization_grad()
        else:
            self._dy = dy
        if not self.needs_input_grad:
            return None
        return dy @ self.params["W"].T

    def __repr__(self):
        return f"Dense({self.n_in}->{self.n_out})"
