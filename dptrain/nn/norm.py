"""Batch normalisation for dense (N, F) and convolutional (N, C, H, W) inputs.

Training normalises with the batch statistics and updates running estimates
(momentum 0.1, unbiased variance, as PyTorch does); evaluation uses the running
estimates. With ``sync`` set (``--sync-bn``), statistics and the two backward
sums are reduced over every rank, so the layer sees the global batch.
"""
from __future__ import annotations

from .. import backend
from ..backend import get_array_module
from . import cuda_kernels
from .layer import Layer


class BatchNorm(Layer):
    def __init__(self, n_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.n = int(n_features)
        self.momentum, self.eps = float(momentum), float(eps)
        # Sum-over-ranks of a small array, or None for local statistics (set by DataParallel).
        self.sync = None

    def initialize(self, rng) -> None:
        xp = backend.xp
        self._add_param("gamma", [1.0] * self.n)
        self._add_param("beta", [0.0] * self.n)
        self.buffers["running_mean"] = xp.zeros(self.n, dtype=backend.dtype)
        self.buffers["running_var"] = xp.ones(self.n, dtype=backend.dtype)

    def output_shape(self, in_shape):
        if in_shape[0] != self.n:
            raise ValueError(f"BatchNorm expects {self.n} features, got {in_shape}")
        return in_shape

    def flops(self, in_shape) -> int:
        size = 1
        for d in in_shape:
            size *= d
        return 4 * size

    def _axes_and_view(self, x):
        if x.ndim == 2:
            return (0,), (1, self.n)
        return (0, 2, 3), (1, self.n, 1, 1)

    def _sum(self, a):
        """Global sum of a small array when synchronised, else itself."""
        return a if self.sync is None else self.sync(a)

    def forward(self, x, train):
        xp = get_array_module(x)
        axes, view = self._axes_and_view(x)
        if not train:
            inv_std = 1.0 / xp.sqrt(self.buffers["running_var"] + self.eps)
            scale = (self.params["gamma"] * inv_std).reshape(view)
            shift = (self.params["beta"] - self.buffers["running_mean"]
                     * self.params["gamma"] * inv_std).reshape(view)
            return x * scale + shift
        count = x.size // self.n
        if self.sync is not None:
            stats = self._sum(xp.concatenate([x.sum(axis=axes), xp.asarray([count], x.dtype)]))
            # the global count stays a 0-d array on the device (no host read in a step);
            # in the input's dtype, exact up to 2**24 values per channel in float32
            total = xp.rint(stats[-1])
            mean = stats[:-1] / total
        else:
            total = count
            mean = x.mean(axis=axes)
        xc = x - mean.reshape(view)
        var = self._sum((xc * xc).sum(axis=axes)) / total     # two passes: exact in float32
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        launch = cuda_kernels.launcher_for(x, "batchnorm")
        if launch is not None:                  # normalise, scale and shift in one kernel
            del xc
            xhat, y = cuda_kernels.bn_normalize(x, mean, inv_std, self.params["gamma"],
                                                self.params["beta"], launch=launch)
        else:
            xhat = xc
            xhat *= inv_std.reshape(view)
            y = None
        self._xhat, self._inv_std, self._total = xhat, inv_std, total
        m = self.momentum
        unbiased = var * (total / xp.maximum(total - 1, 1))
        self.buffers["running_mean"] *= 1 - m
        self.buffers["running_mean"] += m * mean
        self.buffers["running_var"] *= 1 - m
        self.buffers["running_var"] += m * unbiased
        if y is not None:
            return y
        return xhat * self.params["gamma"].reshape(view) + self.params["beta"].reshape(view)

    def backward(self, dy):
        xp = get_array_module(dy)
        axes, view = self._axes_and_view(dy)
        xhat = self._xhat
        dy.sum(axis=axes, out=self.grads["beta"])
        (dy * xhat).sum(axis=axes, out=self.grads["gamma"])
        if not self.needs_input_grad:
            return None
        sums = xp.concatenate([self.grads["beta"], self.grads["gamma"]])
        sums = self._sum(sums)
        sum_dy, sum_dy_xhat = sums[:self.n], sums[self.n:]
        launch = cuda_kernels.launcher_for(dy, "batchnorm")
        if launch is not None:                  # the input gradient in one kernel
            return cuda_kernels.bn_input_grad(dy, xhat, self.params["gamma"] * self._inv_std,
                                              self._total, sum_dy, sum_dy_xhat, launch=launch)
        k = (self.params["gamma"] * self._inv_std / self._total).reshape(view)
        dx = dy * self._total
        dx -= sum_dy.reshape(view)
        dx -= xhat * sum_dy_xhat.reshape(view)
        dx *= k
        return dx

    def __repr__(self):
        return f"BatchNorm({self.n})"
