"""BatchNorm -> ReLU -> MaxPool2D through the compiled kernels (native/src/bn_relu_pool.c): the
linked run of nn/fused_cpu.py (tiling windows, training, the CPU) when the library is built
and the ``cpu_batchnorm`` family is on.

Passes over the full-size input: two for the statistics (the sum, then the squared deviations
about the global mean: the array code's two reductions, posted alike through ``sum_ranks``),
one that writes the pooled output with each window's first maximum and the input value there,
and one that writes the input gradient (a + b * x everywhere, plus the pooled gradient at each
first maximum). The per-channel sums over the pooled arrays are the only other work. Nothing
full-size is kept for backward but the input itself, which the caller holds anyway.

Measured (thesis-cnn, batch 64, float32, 1 thread, `dptrain bench --model thesis-cnn
--batch-size 64 --threads 1 --profile --steps 40`, DPTRAIN_KERNELS auto / generic / auto in
one sitting, 2026-12-05 16:20 UTC, two helpers' jobs beside): the first linked run (64x32x24x24)
1.45 + 1.26 ms forward + backward against 2.29 + 3.59 for nn/fused_cpu.py; the second
(64x32x8x8) 0.45 + 0.43 against 0.52 + 0.71. Of the first run's forward, the two statistics
passes take 0.13 and 0.16 ms and the pooling pass 0.95 ms (kernel alone). The pooling pass
compares a block of windows side by side with selects: with a branch per element, the first
maximum of each window (a coin toss on real data) cost 5 ms in mispredictions.
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import native

P, I64, INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


def runs(x, backend) -> bool:
    return native.runs(x, "cpu_batchnorm", backend)


def _fn(name, dtype, *argtypes):
    return native.function(f"dpn_{name}{native.suffix(dtype)}", *argtypes)


def _planes(x):
    """(n, c, L): every (sample, channel) plane of x is L contiguous values."""
    return x.shape[0], x.shape[1], x[0, 0].size


def channel_sums(x):
    """Per channel sum of x (N, C, ...), in float64."""
    n, c, length = _planes(x)
    out = np.empty(c, np.float64)
    _fn("channel_sums", x.dtype, P, I64, I64, I64, P)(native.ptr(x, x.dtype), n, c, length,
                                                       native.ptr(out))
    return out


def channel_sqdev(x, mean):
    """Per channel sum of (x - mean)^2, in float64."""
    n, c, length = _planes(x)
    out = np.empty(c, np.float64)
    mean = np.ascontiguousarray(mean, dtype=x.dtype)
    _fn("channel_sqdev", x.dtype, P, I64, I64, I64, P, P)(
        native.ptr(x, x.dtype), n, c, length, native.ptr(mean, x.dtype), native.ptr(out))
    return out


def forward(x, mean, inv_std, gamma, beta, k: int, blocked=None):
    """The pooled output (N, C, OH*OW) of x: NCHW, or with ``blocked`` = (OH, OW) the
    (N, C, k*k, OH*OW) that conv_direct.py writes window offset first. Returns (y, saved)."""
    n, c = x.shape[:2]
    h, w = (blocked[0] * k, blocked[1] * k) if blocked is not None else x.shape[2:]
    scale = (gamma * inv_std).astype(x.dtype)
    shift = (beta - mean * scale).astype(x.dtype)
    p = (h // k) * (w // k)
    y = np.empty((n, c, p), x.dtype)
    xsel = np.empty((n, c, p), x.dtype)
    arg = np.empty((n, c, p), np.uint8)
    _fn("bn_relu_pool_forward", x.dtype, P, I64, I64, I64, I64, I64, INT, P, P, P, P, P)(
        native.ptr(x, x.dtype), n, c, h, w, k, int(blocked is not None), native.ptr(scale, x.dtype),
        native.ptr(shift, x.dtype), native.ptr(y), native.ptr(arg), native.ptr(xsel))
    return y, (x, y, arg, xsel, mean, (h, w, k, blocked is not None))


def grad_sums(dy, saved, inv_std, out_dz, out_dz_xhat) -> None:
    """sum(dz) and sum(dz * xhat) per channel into out_dz and out_dz_xhat (dz: the gradient
    at the batch norm's output, nonzero only at each window's first maximum)."""
    x, y, arg, xsel, mean, _ = saved
    n, c, p = y.shape
    dy = np.ascontiguousarray(dy.reshape(y.shape), dtype=y.dtype)
    s_dz, s_dzx = np.empty(c, np.float64), np.empty(c, np.float64)
    _fn("bn_relu_pool_grad_sums", y.dtype, P, P, P, I64, I64, I64, P, P)(
        native.ptr(dy, y.dtype), native.ptr(y), native.ptr(xsel), n, c, p, native.ptr(s_dz),
        native.ptr(s_dzx))
    out_dz[...] = s_dz
    out_dz_xhat[...] = (s_dzx - mean * s_dz) * inv_std


def input_grad(dy, saved, gamma_inv_std, total, sum_dz, sum_dz_xhat, inv_std):
    """dx = gamma * inv_std / total * (total * dz - sum dz - xhat * sum(dz * xhat)), in x's
    layout."""
    x, y, arg, xsel, mean, (h, w, k, blocked) = saved
    dtype = x.dtype
    dy = np.ascontiguousarray(dy.reshape(y.shape), dtype=dtype)
    scale = np.asarray(gamma_inv_std, np.float64) / float(total)
    b = -scale * np.asarray(sum_dz_xhat, np.float64) * inv_std         # times x
    a = -scale * np.asarray(sum_dz, np.float64) - b * mean              # constant
    g = scale * float(total)                                            # times dz
    a, b, g = (np.ascontiguousarray(v, dtype=dtype) for v in (a, b, g))
    dx = np.empty_like(x)
    n, c = x.shape[:2]
    _fn("bn_relu_pool_input_grad", dtype, P, P, P, P, I64, I64, I64, I64, I64, INT, P, P, P, P)(
        native.ptr(x, dtype), native.ptr(dy, dtype), native.ptr(y), native.ptr(arg), n, c, h,
        w, k, int(blocked), native.ptr(a, dtype), native.ptr(b, dtype), native.ptr(g, dtype),
        native.ptr(dx, dtype))
    return dx
