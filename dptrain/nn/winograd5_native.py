"""Winograd F(2x2, 5x5) with compiled transforms (dptrain/native/src/winograd5.c) and its 36
GEMMs left to np.matmul (OpenBLAS): 5x5 stride-1 convolutions with many input channels, such
as thesis-cnn's second layer (32 -> 32 on 12x12), where --kernels runs cpu_winograd.

Why: im2col's three GEMMs per step (forward, dW, dX; 210 MFLOP each at batch 64) already ran
at 90 % of OpenBLAS's peak, so only fewer products could help. F(2x2, 5x5) takes 36 products
per 2x2 output tile and channel pair where the direct convolution takes 100 (2.8x fewer).
Its points are F(4x4, 3x3)'s (0, +-1, +-2, infinity): B^T is the same matrix, and in float32
the results differ from the exact ones by about 1e-6 of their largest value.

Layouts as winograd_native.py's: V (36, C, P), M (36, K, P) with the P tiles of a chunk of
samples last, so that M = U^T V, dV = U dM and dU = V dM^T are row-major products; the
filter transform U = G g G^T (36, C, K) is one (36 x 25) product in NumPy. In training,
forward keeps V (the size of 36/25 of the im2col columns of the batch: 4.7 MB for
thesis-cnn) for backward: 0.7 ms a step less than recomputing it. Sizes whose output is odd
get a last, partly cropped tile.

Measured 2026-12-05 (1 thread, batch 64, thesis-cnn's 32 -> 32 on 12x12, load 0.2-0.4): the
layer 2.4 ms forward + 4.6 backward against 3.6 + 7.8 for im2col (`dptrain bench --model
thesis-cnn --batch-size 64 --threads 1 --profile --steps 40`, DPTRAIN_KERNELS auto then
generic). Chunks of 512 KiB of V: at 2 MiB the same work took 5.6 + 9.4 ms (the core's L2 is
1 MiB), at 256 KiB 2.3 + 4.9. The whole step then 15.25 ms against PyTorch's 25.22 (0.605).
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import native

CHUNK_BYTES = 1 << 19       # of V per chunk: V, M and the GEMMs' operands stay in L2
POSITIONS = 36
MIN_CHANNELS = 16           # below, im2col's K = 25 c_in is no thinner than the 36 GEMMs' K
_I64, _P = ctypes.c_int64, ctypes.c_void_p
_POINTS = (0.0, 1.0, -1.0, 2.0, -2.0)


def _g_matrix() -> np.ndarray:
    """G (6 x 5) of F(2, 5) for the points 0, +-1, +-2 and infinity (Toom-Cook)."""
    g = np.zeros((6, 5))
    for j, p in enumerate(_POINTS):
        den = np.prod([p - q for q in _POINTS if q != p])
        g[j] = [p ** k / den for k in range(5)]
    g[5, 4] = 1.0
    return g


_GG = np.kron(_g_matrix(), _g_matrix())     # (36, 25): U[6a+b] = sum G[a,i] G[b,j] W[5i+j]


def applies(x, c_in: int, kh: int, kw: int, stride: int, pad: int, backend) -> bool:
    return (kh == kw == 5 and stride == 1 and pad <= 2 and c_in >= MIN_CHANNELS
            and x.ndim == 4 and x.shape[0] > 0 and native.runs(x, "cpu_winograd", backend))


def filter_transform(w, backend=None):
    """W (K, C, 5, 5) -> U (36, C, K), rounded once from float64 (``backend``: as
    conv_winograd.filter_transform takes it; applies() has chosen this path already)."""
    k, c = w.shape[:2]
    w25 = w.transpose(2, 3, 1, 0).reshape(25, c * k).astype(np.float64)
    return np.ascontiguousarray((_GG @ w25).reshape(POSITIONS, c, k).astype(w.dtype))


def filter_adjoint(du):
    """dU (36, C, K) -> dW (K, C, 5, 5), the adjoint of filter_transform."""
    _, c, k = du.shape
    dw25 = _GG.T @ du.reshape(POSITIONS, c * k).astype(np.float64)
    return dw25.reshape(5, 5, c, k).transpose(3, 2, 0, 1).astype(du.dtype)


def _tiles(h, w, pad):
    return -(-(h + 2 * pad - 4) // 2), -(-(w + 2 * pad - 4) // 2)


def _chunks(n, per_sample_bytes):
    per = max(1, CHUNK_BYTES // max(1, per_sample_bytes))
    for s in range(0, n, per):
        yield s, min(n, s + per)


def _fn(name, dtype, *argtypes):
    return native.function(f"dpn_wino5_{name}{native.suffix(dtype)}", *argtypes)


def _input(x, pad, th, tw):
    n, c, h, w = x.shape
    p = n * th * tw
    v = np.empty((POSITIONS, c, p), x.dtype)
    _fn("input", x.dtype, _P, _P, *(_I64,) * 8)(native.ptr(x, x.dtype), native.ptr(v), n, c,
                                                 h, w, pad, th, tw, c * p)
    return v


def forward(x, u, bias, pad, keep=False):
    """y (N, K, OH, OW) of x (N, C, H, W) and U (36, C, K); with ``keep``, (y, the V of every
    chunk) for backward."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    k = u.shape[2]
    oh, ow = h + 2 * pad - 4, w + 2 * pad - 4
    th, tw = _tiles(h, w, pad)
    y = np.empty((n, k, oh, ow), x.dtype)
    ut = u.transpose(0, 2, 1)
    b = None if bias is None else np.ascontiguousarray(bias, dtype=x.dtype)
    out = _fn("output", x.dtype, _P, _P, _P, *(_I64,) * 7)
    kept = []
    for s, e in _chunks(n, POSITIONS * c * th * tw * x.itemsize):
        v = _input(x[s:e], pad, th, tw)
        m = np.matmul(ut, v)                                        # (36, K, P)
        p = m.shape[2]
        out(native.ptr(m), None if b is None else native.ptr(b), native.ptr(y[s:e]),
            e - s, k, oh, ow, th, tw, k * p)
        if keep:
            kept.append(v)
    return (y, kept) if keep else y


def backward(x, dy, u, pad, need_dx, db=None, kept=None):
    """(dW (K, C, 5, 5), dX (N, C, H, W) or None); ``db`` (K,) receives the bias gradient;
    ``kept``: forward's V per chunk (else recomputed)."""
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy, dtype=x.dtype)
    n, c, h, w = x.shape
    k = u.shape[2]
    oh, ow = dy.shape[2:]
    th, tw = _tiles(h, w, pad)
    du = np.zeros((POSITIONS, c, k), np.float64 if x.dtype == np.float64 else x.dtype)
    dx = np.empty_like(x) if need_dx else None
    sums = np.zeros(k, np.float64)
    out_adj = _fn("output_adjoint", x.dtype, _P, _P, _P, *(_I64,) * 7)
    in_adj = _fn("input_adjoint", x.dtype, _P, _P, *(_I64,) * 8)
    for i, (s, e) in enumerate(_chunks(n, POSITIONS * c * th * tw * x.itemsize)):
        v = kept[i] if kept else _input(x[s:e], pad, th, tw)
        p = v.shape[2]
        dm = np.empty((POSITIONS, k, p), x.dtype)
        out_adj(native.ptr(dy[s:e]), native.ptr(dm), native.ptr(sums), e - s, k, oh, ow, th,
                tw, k * p)
        du += np.matmul(v, dm.transpose(0, 2, 1))
        if need_dx:
            dv = np.matmul(u, dm)                                   # (36, C, P)
            in_adj(native.ptr(dv), native.ptr(dx[s:e]), e - s, c, h, w, pad, th, tw, c * p)
    if db is not None:
        db[...] = sums
    return filter_adjoint(du), dx
