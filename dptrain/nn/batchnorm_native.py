"""Plain BatchNorm over NCHW channels on the CPU with the compiled kernels (native/src/
batchnorm.c, family ``cpu_batchnorm``), for the batch norms no pooling follows (vgg-cifar's
BN -> ReLU -> Conv): the array code takes about ten passes over the activations (x - mean,
its square, the scale, the affine map; dy * xhat and the four of dx) and keeps xhat; the
kernels take two for the statistics (fused_native.channel_sum / channel_sqdev: norm.py posts
the same reductions as the array code), one for y, one for the backward sums and one for dx,
recomputing xhat from the input, which is all they keep. A ReLU linked by nn/fusion.py
(``fused_relu``: BN -> ReLU with no pooling) is applied in the output pass, and its mask,
dy * (y > 0) as NumPy computes it, in the two backward passes.

Measured 2026-12-05 on the 2-core dev VM (x86-64-v4 library, 1 thread), compiled vs array
code interleaved in one process, median of 30, forward + backward incl. dx. Plain BN, load
average 3.8 (16:49 UTC): 64x32x32x32 1.95 + 2.40 ms vs 8.55 + 8.31; 64x64x16x16 0.97 + 1.22
vs 6.07 + 2.00; 64x128x8x8 0.47 + 0.52 vs 1.12 + 1.00. BN -> ReLU linked vs the two layers,
load average 7.5 (16:56 UTC, so noisy): 4.2 + 11.1 vs 17.1 + 21.3; 1.0 + 1.5 vs 11.6 + 8.5;
0.65 + 0.64 vs 3.3 + 4.5. The backward sums run plane by plane in memory order with 8 lanes
(per channel across the batch, or 16 lanes, GCC's code ran 5-8x slower), and the ReLU mask
is a multiply by (y > 0), not a select, which GCC left as a branch.
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import native

_P, _I = ctypes.c_void_p, ctypes.c_int64


def runs(x, backend) -> bool:
    """Whether the compiled kernels take this (N, C, H, W) batch norm's training step."""
    return (x.ndim == 4 and x.shape[0] > 0 and native.runs(x, "cpu_batchnorm", backend)
            and x.flags.c_contiguous)


def _fn(name, dtype, *argtypes):
    return native.function(name + native.suffix(dtype), *argtypes)


def _vec(a, dtype):
    return np.ascontiguousarray(a, dtype)


def forward(x, mean, inv_std, gamma, beta, relu=False):
    """y = xhat * gamma + beta (then max(y, 0) with ``relu``: a linked ReLU, nn/fusion.py),
    and what backward needs (with ``relu`` the backward takes the ReLU output's gradient)."""
    n, c = x.shape[:2]
    y = np.empty_like(x)
    saved = (x, _vec(mean, x.dtype), _vec(inv_std, x.dtype), y if relu else None)
    _fn("dpn_bn_forward", x.dtype, _P, _P, _P, _P, _P, _I, _I, _I, _I, _P)(
        native.ptr(x, x.dtype), native.ptr(saved[1]), native.ptr(saved[2]),
        native.ptr(_vec(gamma, x.dtype)), native.ptr(_vec(beta, x.dtype)), n, c,
        x.size // (n * c), int(relu), native.ptr(y))
    return y, saved


def grad_sums(dy, saved, out_dy, out_dy_xhat):
    """Per-channel local sum(dy) and sum(dy * xhat) into the two outputs."""
    x, mean, inv_std, y = saved
    n, c = x.shape[:2]
    dy = np.ascontiguousarray(dy, x.dtype)
    sums = np.full((2, c), np.nan, x.dtype)      # stays NaN if the kernel finds no memory
    _fn("dpn_bn_grad_sums", x.dtype, _P, _P, _P, _P, _P, _I, _I, _I, _P, _P)(
        native.ptr(dy), native.ptr(x), None if y is None else native.ptr(y), native.ptr(mean), native.ptr(inv_std), n, c,
        x.size // (n * c), native.ptr(sums[0]), native.ptr(sums[1]))
    out_dy[...] = sums[0]
    out_dy_xhat[...] = sums[1]


def input_grad(dy, saved, gamma_inv_std, total, sum_dy, sum_dy_xhat):
    """dx = gamma * inv_std / total * (total * dy - sum dy - xhat * sum(dy xhat))."""
    x, mean, inv_std, y = saved
    n, c = x.shape[:2]
    dy = np.ascontiguousarray(dy, x.dtype)
    real = ctypes.c_float if x.dtype == np.float32 else ctypes.c_double
    dx = np.empty_like(x)
    _fn("dpn_bn_input_grad", x.dtype, _P, _P, _P, _P, _P, _P, real, _P, _P, _I, _I, _I, _P)(
        native.ptr(dy), native.ptr(x), None if y is None else native.ptr(y), native.ptr(mean), native.ptr(inv_std),
        native.ptr(_vec(gamma_inv_std, x.dtype)), float(total), native.ptr(_vec(sum_dy, x.dtype)),
        native.ptr(_vec(sum_dy_xhat, x.dtype)), n, c, x.size // (n * c), native.ptr(dx))
    return dx
