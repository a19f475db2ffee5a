"""Batch normalisation for dense (N, F) and convolutional (N, C, H, W) inputs.

Training normalises with the batch statistics and updates running estimates
(momentum 0.1, unbiased variance, as PyTorch does); evaluation uses the running
estimates. With ``sync`` set (``--sync-bn``), statistics and the two backward
sums are reduced over every rank, so the layer sees the global batch.

With CUDA kernels (the ``batchnorm`` family) the statistics take one pass over x and the
backward sums one pass over dy and xhat (nn/kernels_cuda/norm.py); the array code takes two
passes for the variance, exact in float32. When nn/fusion.py has linked a following ReLU
and MaxPool2D (``fused_tail``) and the ``bn_relu_pool`` family is on, forward returns the
pooled output of all three layers and the two others pass their input through.
"""
from __future__ import annotations

from ..backend import get_array_module
from . import batchnorm_native, cuda_kernels, fused_cpu, fused_native
from .layer import Layer


def _count_column(xp, count: int, dtype):
    """[count] on x's device, written by a fill kernel. ``xp.asarray([count])`` copies host
    data: CuPy stages it in a pinned buffer and frees that buffer once an event recorded
    behind the copy has passed, so a CUDA graph capture would record a copy from a buffer it
    does not own, and an event query on a captured event, which CUDA refuses."""
    return xp.full((1,), count, dtype=dtype)


class BatchNorm(Layer):
    """Batch normalisation over the features of (B, F) or the channels of (B, C, H, W);
    learned gamma and beta, running statistics as buffers (over the global batch with
    --sync-bn)."""

    fused_tail = None          # (ReLU, MaxPool2D) that may run inside this layer
    fused_relu = None          # a ReLU (no pooling after it) the compiled kernels may run
    # (OH, OW) pooled when the linked Conv2D's output comes window offset first (fused_cpu.py),
    # set by that layer's forward for this layer's next one
    blocked_input = None

    def __init__(self, n_features: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.n = int(n_features)
        self.momentum, self.eps = float(momentum), float(eps)
        # Sum-over-ranks of a small array, or None for local statistics (set by DataParallel).
        self.sync = None
        self._fused = self._cpu_fused = self._plain = None

    def initialize(self, rng) -> None:
        b = self.compute_backend()
        self._add_param("gamma", [1.0] * self.n)
        self._add_param("beta", [0.0] * self.n)
        self.buffers["running_mean"] = b.zeros(self.n)
        self.buffers["running_var"] = b.ones(self.n)

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

    def _batch_stats(self, x, launch, compiled=False):
        """(mean, biased variance, count) of the (global) batch per channel, and x - mean from
        the array code (None from the kernels; ``compiled``: the local sums from the compiled
        CPU kernels, nn/fused_native.py). Every rank posts the same two reductions whichever
        path computes its local part."""
        xp = get_array_module(x)
        axes, view = self._axes_and_view(x)
        count = x.size // self.n
        if launch is not None:              # one pass: local mean and squared deviations
            local_mean, local_m2 = cuda_kernels.bn_stats(x, launch=launch)
            if self.sync is None:
                return local_mean, local_m2 / count, count, None
            stats = self._sum(xp.concatenate([local_mean * count,
                                              _count_column(xp, count, x.dtype)]))
            total = xp.rint(stats[-1])
            mean = stats[:-1] / total
            # each rank's squared deviations about the global mean (parallel axis theorem):
            # a sum of non-negative terms, no cancellation
            shift = local_mean - mean
            return mean, self._sum(local_m2 + count * shift * shift) / total, total, None
        if self.sync is not None:
            local = fused_native.channel_sum(x, self.n) if compiled else x.sum(axis=axes)
            stats = self._sum(xp.concatenate([local, _count_column(xp, count, x.dtype)]))
            # the global count stays a 0-d array on the device (no host read in a step);
            # in the input's dtype, exact up to 2**24 values per channel in float32
            total = xp.rint(stats[-1])
            mean = stats[:-1] / total
        else:
            total = count
            mean = (fused_native.channel_sum(x, self.n) / count if compiled
                    else x.mean(axis=axes))
        if compiled:
            return mean, self._sum(fused_native.channel_sqdev(x, mean, self.n)) / total, total, None
        xc = x - mean.reshape(view)
        var = self._sum((xc * xc).sum(axis=axes)) / total     # two passes: exact in float32
        return mean, var, total, xc

    def _fusion_launcher(self, x, train):
        if not train or self.fused_tail is None or x.ndim != 4 or x.shape[0] == 0:
            return None
        return cuda_kernels.launcher_for(x, "bn_relu_pool", self.backend)

    def _cpu_fusion(self, x, train) -> bool:
        """Whether the linked run takes nn/fused_cpu.py (NumPy, tiling windows, no kernels)."""
        return (train and self.fused_tail is not None and fused_cpu.applies(x, self.fused_tail[1])
                and cuda_kernels.launcher_for(x, "batchnorm", self.backend) is None)

    def forward(self, x, train):
        xp = get_array_module(x)
        axes, view = self._axes_and_view(x)
        blocked, self.blocked_input = self.blocked_input, None
        fused = self._fusion_launcher(x, train)
        cpu_fused = fused is None and (blocked is not None or self._cpu_fusion(x, train))
        self._blocked = blocked
        if self.fused_relu is not None:
            self.fused_relu.bypass = False
        for layer in self.fused_tail or ():
            layer.bypass = fused is not None or cpu_fused
        self._fused = self._cpu_fused = self._plain = None
        if not train:
            inv_std = 1.0 / xp.sqrt(self.buffers["running_var"] + self.eps)
            scale = (self.params["gamma"] * inv_std).reshape(view)
            shift = (self.params["beta"] - self.buffers["running_mean"]
                     * self.params["gamma"] * inv_std).reshape(view)
            out = x * scale
            out += shift                    # in place: one full-size temporary, not two
            return out
        if fused is not None:
            x = xp.ascontiguousarray(x)     # kept for backward: a copy only if strided
        launch = (fused if fused is not None
                  else cuda_kernels.launcher_for(x, "batchnorm", self.backend))
        if x.size == 0:
            launch = None                   # an empty rank's zeros: the array code is exact
        compiled = cpu_fused and fused_native.runs(x, self.fused_tail[1], self.backend)
        self._cpu_impl = fused_native if compiled else fused_cpu
        plain = (fused is None and not cpu_fused and launch is None
                 and batchnorm_native.runs(x, self.backend))       # nn/batchnorm_native.py
        mean, var, total, xc = self._batch_stats(x, launch, compiled or plain)
        inv_std = 1.0 / xp.sqrt(var + self.eps)
        self._inv_std, self._total = inv_std, total
        m = self.momentum
        unbiased = var * (total / xp.maximum(total - 1, 1))
        self.buffers["running_mean"] *= 1 - m
        self.buffers["running_mean"] += m * mean
        self.buffers["running_var"] *= 1 - m
        self.buffers["running_var"] += m * unbiased
        if fused is not None:               # normalise, ReLU and max-pool in one kernel
            pool = self.fused_tail[1]
            y, arg = cuda_kernels.bn_relu_maxpool_forward(
                x, mean, inv_std, self.params["gamma"], self.params["beta"], pool.kh, pool.kw,
                pool.stride, pool.padding, launch=fused)
            self._fused, self._xhat = (x, mean, y, arg), None
            return y
        if cpu_fused:                       # the three layers in few passes (nn/fused_cpu.py)
            args = (inv_std, self.params["gamma"], self.params["beta"], self.fused_tail[1].kh,
                    blocked is not None)
            y, self._cpu_fused = (fused_native.forward(x, mean, *args) if compiled
                                  else fused_cpu.forward(xc, *args))
            self._xhat = None
            return y if blocked is None else y.reshape(x.shape[:2] + blocked)
        if plain:
            relu = self.fused_relu is not None
            if relu:
                self.fused_relu.bypass = True
            y, self._plain = batchnorm_native.forward(x, mean, inv_std, self.params["gamma"],
                                                      self.params["beta"], relu)
            self._xhat = None
            return y
        if launch is not None:              # normalise, scale and shift in one kernel
            xhat, y = cuda_kernels.bn_normalize(x, mean, inv_std, self.params["gamma"],
                                                self.params["beta"], launch=launch)
            self._xhat = xhat
            return y
        xhat = xc
        xhat *= inv_std.reshape(view)
        self._xhat = xhat
        return xhat * self.params["gamma"].reshape(view) + self.params["beta"].reshape(view)

    def backward(self, dy):
        if self._fused is not None:
            return self._fused_backward(dy)
        if self._cpu_fused is not None:
            return self._cpu_fused_backward(dy)
        if self._plain is not None:
            return self._plain_backward(dy)
        xp = get_array_module(dy)
        axes, view = self._axes_and_view(dy)
        xhat = self._xhat
        launch = cuda_kernels.launcher_for(dy, "batchnorm", self.backend)
        if launch is not None:                  # both sums in one pass
            cuda_kernels.bn_grad_sums(dy, xhat, launch=launch, out_dy=self.grads["beta"],
                                      out_dy_xhat=self.grads["gamma"])
        else:
            dy.sum(axis=axes, out=self.grads["beta"])
            (dy * xhat).sum(axis=axes, out=self.grads["gamma"])
        if not self.needs_input_grad:
            return None
        sum_dy, sum_dy_xhat = self._global_sums()
        if launch is not None:                  # the input gradient in one kernel
            return cuda_kernels.bn_input_grad(dy, xhat, self.params["gamma"] * self._inv_std,
                                              self._total, sum_dy, sum_dy_xhat, launch=launch)
        k = (self.params["gamma"] * self._inv_std / self._total).reshape(view)
        dx = dy * self._total
        dx -= sum_dy.reshape(view)
        dx -= xhat * sum_dy_xhat.reshape(view)
        dx *= k
        return dx

    def _global_sums(self):
        """(sum dy, sum dy * xhat) over the global batch, from the local ones in grads."""
        sums = get_array_module(self.grads["beta"]).concatenate([self.grads["beta"],
                                                                 self.grads["gamma"]])
        sums = self._sum(sums)
        return sums[:self.n], sums[self.n:]

    def _fused_backward(self, dy):
        """Backward of BatchNorm -> ReLU -> MaxPool2D from the pooled output's gradient."""
        x, mean, y, arg = self._fused
        self._fused = None
        pool = self.fused_tail[1]
        launch = cuda_kernels.launcher_for(dy, "bn_relu_pool", self.backend)
        cuda_kernels.bn_relu_maxpool_grad_sums(dy, y, arg, x, mean, self._inv_std, pool.kw,
                                               pool.stride, pool.padding, launch=launch,
                                               out_dz=self.grads["beta"],
                                               out_dz_xhat=self.grads["gamma"])
        if not self.needs_input_grad:
            return None
        sum_dz, sum_dz_xhat = self._global_sums()
        return cuda_kernels.bn_relu_maxpool_input_grad(
            dy, y, arg, x, mean, self._inv_std, self.params["gamma"] * self._inv_std,
            self._total, sum_dz, sum_dz_xhat, pool.kh, pool.kw, pool.stride, pool.padding,
            launch=launch)

    def _cpu_fused_backward(self, dy):
        """Backward of the linked run from the pooled output's gradient (nn/fused_cpu.py)."""
        saved, self._cpu_fused = self._cpu_fused, None
        if self._blocked is not None:
            dy = dy.reshape(dy.shape[0], dy.shape[1], 1, -1)
        gz = self._cpu_impl.grad_sums(dy, saved, self.grads["beta"], self.grads["gamma"])
        if not self.needs_input_grad:
            return None
        sum_dz, sum_dz_xhat = self._global_sums()
        return self._cpu_impl.input_grad(gz, saved, self.params["gamma"] * self._inv_std,
                                         self._total, sum_dz, sum_dz_xhat)

    def _plain_backward(self, dy):
        """Backward of the compiled plain batch norm (nn/batchnorm_native.py)."""
        saved, self._plain = self._plain, None
        batchnorm_native.grad_sums(dy, saved, self.grads["beta"], self.grads["gamma"])
        if not self.needs_input_grad:
            return None
        sum_dy, sum_dy_xhat = self._global_sums()
        return batchnorm_native.input_grad(dy, saved, self.params["gamma"] * self._inv_std,
                                           self._total, sum_dy, sum_dy_xhat)

    def __repr__(self):
        return f"BatchNorm({self.n})"
