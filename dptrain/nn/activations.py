"""Element-wise activations. Each caches what its derivative needs."""
from __future__ import annotations

from ..backend import get_array_module
from .layer import Layer, PassThrough


class _Elementwise(Layer):
    def flops(self, in_shape) -> int:
        size = 1
        for d in in_shape:
            size *= d
        return size


class ReLU(_Elementwise, PassThrough):
    """max(0, x)."""

    def forward(self, x, train):
        if self._take_bypass():
            return x
        xp = get_array_module(x)
        y = xp.maximum(x, 0)
        self._y = y
        return y

    def backward(self, dy):
        if self._passing:
            return dy
        return dy * (self._y > 0)


class LeakyReLU(_Elementwise):
    """x for x > 0, else ``alpha`` * x."""

    def __init__(self, alpha: float = 0.01):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, train):
        xp = get_array_module(x)
        self._pos = x > 0
        return xp.where(self._pos, x, self.alpha * x)

    def backward(self, dy):
        xp = get_array_module(dy)
        return xp.where(self._pos, dy, self.alpha * dy)


class PReLU(_Elementwise):
    """Leaky ReLU with a learned slope per channel (axis 1), initialised to 0.25."""

    def __init__(self, n_channels: int = 1, init: float = 0.25):
        super().__init__()
        self.n, self.init_slope = int(n_channels), float(init)

    def initialize(self, rng) -> None:
        self._add_param("alpha", [self.init_slope] * self.n)

    def _view(self, x):
        return (1, self.n) + (1,) * (x.ndim - 2)

    def forward(self, x, train):
        xp = get_array_module(x)
        self._x = x
        a = self.params["alpha"].reshape(self._view(x))
        return xp.where(x > 0, x, a * x)

    def backward(self, dy):
        xp = get_array_module(dy)
        x = self._x
        neg = x <= 0
        axes = (0,) + tuple(range(2, x.ndim))
        (dy * x * neg).sum(axis=axes, out=self.grads["alpha"])
        a = self.params["alpha"].reshape(self._view(x))
        return xp.where(neg, a * dy, dy)


class ELU(_Elementwise):
    """x for x > 0, else ``alpha`` * (e^x - 1)."""

    def __init__(self, alpha: float = 1.0):
        super().__init__()
        self.alpha = float(alpha)

    def forward(self, x, train):
        xp = get_array_module(x)
        self._x = x
        self._y = xp.where(x > 0, x, self.alpha * xp.expm1(xp.minimum(x, 0)))
        return self._y

    def backward(self, dy):
        xp = get_array_module(dy)
        return xp.where(self._x > 0, dy, dy * (self._y + self.alpha))


class Sigmoid(_Elementwise):
    """1 / (1 + e^-x)."""

    def forward(self, x, train):
        xp = get_array_module(x)
        # exp of a non-positive number only: no overflow for large |x|
        e = xp.exp(-xp.abs(x))
        self._y = xp.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(x.dtype, copy=False)
        return self._y

    def backward(self, dy):
        return dy * self._y * (1.0 - self._y)


class Tanh(_Elementwise):
    """tanh(x)."""

    def forward(self, x, train):
        self._y = get_array_module(x).tanh(x)
        return self._y

    def backward(self, dy):
        return dy * (1.0 - self._y * self._y)


class Softplus(_Elementwise):
    """log(1 + e^x), computed stably; its derivative is the sigmoid."""

    def forward(self, x, train):
        xp = get_array_module(x)
        self._x = x
        return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))

    def backward(self, dy):
        xp = get_array_module(dy)
        e = xp.exp(-xp.abs(self._x))
        sig = xp.where(self._x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))
        return (dy * sig).astype(dy.dtype, copy=False)


