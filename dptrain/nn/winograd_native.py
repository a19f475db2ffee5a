"""Winograd F(4x4, 3x3) with compiled transforms (dptrain/native/src/winograd*.c) and its
36 GEMMs left to np.matmul (OpenBLAS), for conv_winograd.py where --kernels runs cpu_winograd.

Why F(4x4) and not the NumPy path's F(2x2): with the transforms in C, the GEMMs were most of
the time and already at OpenBLAS's peak (about 100 GFLOP/s on one core here), so only fewer
products could help: 36 per 16 outputs instead of 16 per 4, 44 % fewer. The price is
rounding: F(4x4)'s matrices hold 4, 5 and 8 (and sixths in G), so float32 results differ
from the exact ones by a few 1e-6 of their largest value (F(2x2): about 1e-6), well inside
what float32 training tolerates; float64 training never comes here (native.DTYPES).

Each transform is one pass in C: the input's from NCHW with the padding done in the kernel
(no padded copy); the output's adds the bias and writes NCHW; dY's also sums the bias
gradient; the input adjoint writes dX straight (overlapping windows summed in two carried
rows). The tiles lie where the GEMMs want them: V (36, C, P) and M (36, K, P) with the P
tiles of a chunk last, so M = U^T V, dV = U dM and dU = V dM^T are row-major products (a
transposed operand is a BLAS flag, not a copy). A chunk of samples keeps V and M in the L2
cache (CHUNK_BYTES); backward recomputes V instead of keeping it from forward.

Measured 2026-12-05 on this 2-core EPYC (1 thread, batch 64), `dptrain bench --model
vgg-cifar --batch-size 64 --threads 1 --profile --steps 10` with DPTRAIN_KERNELS=auto and
=generic alternated twice, 15:59 UTC, load 0.5-0.6; forward + backward ms, compiled F(4x4)
vs NumPy F(2x2): 32->32 at 32x32 7.6 + 14.4 vs 23.0 + 40.5; 32->64 at 16x16 3.5 + 7.9 vs
8.8 + 14.3; 64->64 at 16x16 5.7 + 12.9 vs 14.0 + 25.9; 64->128 at 8x8 2.8 + 6.1 vs
6.6 + 11.4; 128->128 at 8x8 4.6 + 11.3 vs 9.8 + 19.5; the five layers 77 vs 188 ms, the
step 135 vs 231 ms. Of the compiled 77 ms about 39 are the GEMMs (at OpenBLAS's peak) and
22 the transforms. Side by side with PyTorch (`dptrain bench --model vgg-cifar --batch-size
64 --threads 1 --rounds 5 --steps 20`, 16:00 UTC, load 0.6-0.9): dptrain 138.1 ms, PyTorch
2.13 198.2 ms, ratio 0.697; with DPTRAIN_KERNELS=generic (16:01, --rounds 3): 232.7 vs
199.6 ms, 1.166. Tried and left out: larger chunks in backward (for a longer inner
dimension of the dU GEMM: 2-16 MiB, 3 to 17 ms slower), samples innermost in the kernels'
loops, recomputing instead of carrying the input adjoint's overlap (no gain).
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import native

# Of V (or M) per chunk: V, M and the GEMMs' reads stay in L2 (2-8 MiB chunks measured slower
# by 2 to 17 ms a step in backward, 256 KiB by 10 ms).
CHUNK_BYTES = 1 << 20
POSITIONS = 36              # a 6x6 input tile per 4x4 output tile
_I64 = ctypes.c_int64
_P = ctypes.c_void_p


def _addr(planes):
    """The address of a (36, rows, p) view of _Planes (each matrix C-contiguous, the
    kernels step from one to the next by the stride they are given)."""
    assert planes.strides[1:] == (planes.shape[2] * planes.itemsize, planes.itemsize)
    return planes.ctypes.data


def _kernel(name, dtype, n_ints):
    return native.function(f"dpn_wino_{name}{native.suffix(dtype)}", _P, _P, *(
        (_P,) if name in ("output", "output_adjoint") else ()), *(_I64,) * n_ints)


def filter_transform(w):
    """W (K, C, 3, 3) -> U (36, C, K) = G W G^T per filter (in double inside: G holds sixths)."""
    k, c = w.shape[:2]
    w = np.ascontiguousarray(w)
    u = np.empty((POSITIONS, c, k), dtype=w.dtype)
    native.function(f"dpn_wino_filter{native.suffix(w.dtype)}", _P, _P, _I64, _I64)(
        native.ptr(w), native.ptr(u), k, c)
    return u


def filter_adjoint(du):
    """dU (36, C, K) -> dW (K, C, 3, 3), the adjoint of filter_transform."""
    _, c, k = du.shape
    dw = np.empty((k, c, 3, 3), dtype=du.dtype)
    native.function(f"dpn_wino_filter_adjoint{native.suffix(du.dtype)}", _P, _P, _I64, _I64)(
        native.ptr(du), native.ptr(dw), k, c)
    return dw


def tiles(oh, ow):
    """Rows and columns of 4x4 output tiles."""
    return -(-oh // 4), -(-ow // 4)


def _per_chunk(n, per_sample_bytes, limit):
    return min(n, max(1, limit // max(1, per_sample_bytes)))


def _chunks(n, per):
    for s in range(0, n, per):
        yield s, min(n, s + per)


def _plane_stride(size):
    """The distance in elements between two of the 36 tile planes of ``size`` elements: a
    multiple of 1024 plus 16, so that the planes' rows fall in different sets of the L1 cache
    (a power-of-two distance puts them all in one 8-way set, and every store misses)."""
    return -(-size // 1024) * 1024 + 16


class _Planes:
    """Buffers for the 36 (rows, P) tile matrices of a chunk of up to ``most`` tiles, each
    matrix at ``stride`` from the last; ``view(p)`` the (36, rows, p) array of p tiles."""

    def __init__(self, rows, most, dtype):
        self.rows, self.stride = rows, _plane_stride(rows * most)
        self.flat = np.empty((POSITIONS, self.stride), dtype=dtype)

    def view(self, p):
        return self.flat[:, :self.rows * p].reshape(POSITIONS, self.rows, p)


def _plan(n, c, k, oh, ow, dtype):
    """(th, tw, tiles per sample, samples per chunk, V's planes, M's planes): forward and
    backward chunk alike, so the transformed tiles of a chunk fit CHUNK_BYTES."""
    th, tw = tiles(oh, ow)
    n_tiles = th * tw
    per_sample = POSITIONS * n_tiles * max(c, k) * np.dtype(dtype).itemsize
    per = _per_chunk(n, per_sample, CHUNK_BYTES)
    rows = per * n_tiles
    return th, tw, n_tiles, per, _Planes(c, rows, dtype), _Planes(k, rows, dtype)


def forward(x, u, bias, pad, oh, ow):
    """y (N, K, OH, OW) of x (N, C, H, W) and the filter transform u (36, C, K)."""
    x = np.ascontiguousarray(x)
    n, c, h, w = x.shape
    k, dt = u.shape[2], x.dtype
    u_t = u.transpose(0, 2, 1)                       # (36, K, C): a BLAS flag, no copy
    th, tw, n_tiles, per, v_buf, m_buf = _plan(n, c, k, oh, ow, dt)
    bias = None if bias is None else np.ascontiguousarray(bias, dtype=dt)
    transform_in, transform_out = _kernel("input", dt, 8), _kernel("output", dt, 7)
    y = np.empty((n, k, oh, ow), dtype=dt)
    for s, e in _chunks(n, per):
        p = (e - s) * n_tiles
        v, m = v_buf.view(p), m_buf.view(p)
        transform_in(native.ptr(x[s:e]), _addr(v), e - s, c, h, w, pad, th, tw, v_buf.stride)
        np.matmul(u_t, v, out=m)
        transform_out(_addr(m), None if bias is None else native.ptr(bias),
                      native.ptr(y[s:e]), e - s, k, oh, ow, th, tw, m_buf.stride)
    return y


def backward(x, dy, u, pad, need_dx, db):
    """(dU (36, C, K), dX (N, C, H, W) or None) from dy (N, K, OH, OW); ``db`` (K,), when
    not None, receives the bias gradient (the sum of dy over samples and pixels)."""
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    n, c, h, w = x.shape
    k, oh, ow = dy.shape[1:]
    dt = x.dtype
    th, tw, n_tiles, per, v_buf, m_buf = _plan(n, c, k, oh, ow, dt)
    transform_in, transform_dy = _kernel("input", dt, 8), _kernel("output_adjoint", dt, 7)
    adjoint_in = _kernel("input_adjoint", dt, 8)
    sums = np.zeros(k, dtype=np.float64)
    du = np.zeros((POSITIONS, c, k), dtype=dt)
    du_part = np.empty_like(du)
    dx = np.empty(x.shape, dtype=dt) if need_dx else None
    for s, e in _chunks(n, per):
        p = (e - s) * n_tiles
        v, dm = v_buf.view(p), m_buf.view(p)
        transform_dy(native.ptr(dy[s:e]), _addr(dm), native.ptr(sums), e - s, k, oh, ow,
                     th, tw, m_buf.stride)
        transform_in(native.ptr(x[s:e]), _addr(v), e - s, c, h, w, pad, th, tw, v_buf.stride)
        np.matmul(v, dm.transpose(0, 2, 1), out=du_part)
        du += du_part
        if need_dx:
            np.matmul(u, dm, out=v)                  # dV replaces V, which is spent
            adjoint_in(_addr(v), native.ptr(dx[s:e]), e - s, c, h, w, pad, th, tw,
                       v_buf.stride)
    if db is not None:
        db[...] = sums
    return du, dx
