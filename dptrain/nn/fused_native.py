"""BatchNorm -> ReLU -> MaxPool2D on the CPU with the compiled kernels (native/src/
batchnorm_pool.c, family ``cpu_batchnorm``): the linked run of nn/fused_cpu.py in four sweeps
over the full-size input instead of about seven NumPy passes, and nothing full-size kept for
backward but the input itself (the pooled output and each window's first-maximum offset,
one byte, are quarter size).

Statistics: one pass for the local per-channel sums, one for the squared deviations about
the (global) mean; norm.py posts the same reductions as with the array code, so --sync-bn
runs stay rank-count invariant. Forward: the pooled maximum of xs = (x - mean) * inv_std * s
(s = sign of gamma, as fused_cpu.py) and its first position per window. Backward: the sums
over the pooled arrays, then one pass writing dx (the first maximum of each window gets the
gradient, NaN propagates). Both layouts: NCHW, and conv_direct.py's window-offset-first
hand-off (``blocked``).

Measured 2026-12-05 16:43-16:46 UTC on the 2-core dev VM (AMD EPYC, x86-64-v4 library, 1
thread, load average 1.3-3.3 from other jobs), compiled vs NumPy (fused_cpu.py) interleaved in
one process, median of 40, forward + backward of the linked run incl. the input gradient:
64x32x24x24 blocked 0.80 + 0.98 ms vs 1.75 + 2.71; NCHW 1.39 + 1.16 vs 2.33 + 7.08 (loaded);
64x32x8x8 NCHW 0.18 + 0.16 vs 0.40 + 0.61. In ``dptrain bench --model thesis-cnn --profile``
(DPTRAIN_KERNELS=auto vs generic, alternating runs, loaded): first block 0.59 + 1.25 ms vs
2.11 + 7.17, second 0.24 + 0.16 vs 0.51 + 0.70. The pooling loops vectorise only with
no-trapping-math (set in the source) and, for 2x2 NCHW windows, as gathers over a table of
window corners; the rows of windows alone (12 wide) are too short for 16-lane vectors.
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import native

_P, _I = ctypes.c_void_p, ctypes.c_int64
FAMILY = "cpu_batchnorm"


def runs(x, pool, backend) -> bool:
    """Whether the compiled kernels take the linked run on ``x`` (fused_cpu.applies holds)."""
    return (pool.kh <= 16 and native.runs(x, FAMILY, backend) and x.flags.c_contiguous)


def _fn(name, dtype, *argtypes):
    return native.function(name + native.suffix(dtype), *argtypes)


def channel_sum(x, n_channels: int):
    """Per-channel local sum of (N, C, ...) x, in x's dtype."""
    out = np.empty(n_channels, x.dtype)
    _fn("dpn_bn_channel_sum", x.dtype, _P, _I, _I, _I, _P)(
        native.ptr(x, x.dtype), x.shape[0], n_channels, x.size // max(x.shape[0] * n_channels, 1),
        native.ptr(out))
    return out


def channel_sqdev(x, mean, n_channels: int):
    """Per-channel local sum of (x - mean)**2."""
    out = np.empty(n_channels, x.dtype)
    mean = np.ascontiguousarray(mean, x.dtype)
    _fn("dpn_bn_channel_sqdev", x.dtype, _P, _P, _I, _I, _I, _P)(
        native.ptr(x, x.dtype), native.ptr(mean), x.shape[0], n_channels,
        x.size // max(x.shape[0] * n_channels, 1), native.ptr(out))
    return out


def _geometry(x, k, blocked):
    """(N, C, H, W) as the kernels index a plane (blocked: H = k, W = k * windows)."""
    n, c = x.shape[:2]
    if blocked:
        return n, c, k, x.shape[2] * x.shape[3] // k
    return n, c, x.shape[2], x.shape[3]


def _vec(a, dtype):
    return np.ascontiguousarray(a, dtype)


def forward(x, mean, inv_std, gamma, beta, k, blocked=False):
    """The pooled output ((N, C, 1, windows) when ``blocked``) and what backward needs."""
    n, c, h, w = _geometry(x, k, blocked)
    shape = (n, c, 1, (h // k) * (w // k)) if blocked else (n, c, h // k, w // k)
    y, pooled = np.empty(shape, x.dtype), np.empty(shape, x.dtype)
    arg = np.empty(shape, np.int32)
    mean, inv_std = _vec(mean, x.dtype), _vec(inv_std, x.dtype)
    gamma, beta = _vec(gamma, x.dtype), _vec(beta, x.dtype)
    _fn("dpn_bn_relu_pool_forward", x.dtype, _P, _P, _P, _P, _P, _I, _I, _I, _I, _I, _I, _P, _P,
        _P)(native.ptr(x, x.dtype), native.ptr(mean), native.ptr(inv_std), native.ptr(gamma),
            native.ptr(beta), n, c, h, w, k, int(blocked), native.ptr(y), native.ptr(pooled),
            native.ptr(arg))
    return y, (x, mean, inv_std, gamma, y, pooled, arg, (k, blocked))


def grad_sums(dy, saved, out_dz, out_dz_xhat):
    """Per-channel local sum(dz) and sum(dz * xhat) into the two outputs; returns dz pooled."""
    x, _, _, gamma, y, pooled, _, _ = saved
    n, c = x.shape[:2]
    dy = np.ascontiguousarray(dy, x.dtype).reshape(y.shape)
    gz = np.empty_like(y)
    sums = np.empty((2, c), x.dtype)
    _fn("dpn_bn_relu_pool_grad_sums", x.dtype, _P, _P, _P, _P, _I, _I, _I, _P, _P, _P)(
        native.ptr(dy), native.ptr(y), native.ptr(pooled), native.ptr(gamma), n, c,
        y.size // max(n * c, 1), native.ptr(gz), native.ptr(sums[0]), native.ptr(sums[1]))
    out_dz[...] = sums[0]
    out_dz_xhat[...] = sums[1]
    return gz


def input_grad(gz, saved, gamma_inv_std, total, sum_dz, sum_dz_xhat):
    """dx (x's shape) = gamma * inv_std / total * (total * dz - sum dz - xhat * sum(dz xhat))."""
    x, mean, inv_std, _, _, _, arg, (k, blocked) = saved
    n, c, h, w = _geometry(x, k, blocked)
    real = ctypes.c_float if x.dtype == np.float32 else ctypes.c_double
    dx = np.empty_like(x)
    _fn("dpn_bn_relu_pool_input_grad", x.dtype, _P, _P, _P, _P, _P, _P, real, _P, _P, _I, _I,
        _I, _I, _I, _I, _P)(
        native.ptr(gz), native.ptr(arg), native.ptr(x), native.ptr(mean), native.ptr(inv_std),
        native.ptr(_vec(gamma_inv_std, x.dtype)), float(total),
        native.ptr(_vec(sum_dz, x.dtype)), native.ptr(_vec(sum_dz_xhat, x.dtype)), n, c, h, w,
        k, int(blocked), native.ptr(dx))
    return dx
