"""Channels-last convolution with compiled layout kernels around OpenBLAS GEMMs ("cpu_conv").

The arithmetic stays in NumPy's GEMMs (columns @ W^T, dY^T @ columns, dY @ W); what
dptrain/native/src/conv_layout.c replaces is everything around them that NumPy can only do
as strided copies: NCHW -> NHWC of x and dY, im2col's window copy, col2im's kh*kw strided
adds and the NHWC -> NCHW transposes of y (with the bias added in the same pass) and of dX.
Columns are built a few samples at a time (conv_chunked.COLUMN_BYTES) so that they stay in
cache between im2col and the GEMM; backward rebuilds them instead of keeping them.

dX comes from ONE GEMM (rows, c_out) @ (c_out, kh*kw*c_in) whose rows are im2col-shaped
and are scattered by col2im, instead of kh*kw thin (c_out x c_in) products.

Used for float32 NumPy inputs with more than conv_direct.MAX_CHANNELS channels when the
"cpu_conv" family runs (native.runs); otherwise conv.py keeps the NumPy paths. For fewer
channels (a first layer) the functions at the end replace conv_direct.py's strided column
copy and fold the bias and its gradient into the GEMMs (a row of ones).

Measured (2026-12-05 16:41-16:46 UTC, 2-core EPYC shared with other jobs, load 1.3-3.2, so
ratios within one run only; `DPTRAIN_KERNELS=auto|generic dptrain bench --model thesis-cnn
--batch-size 64 --threads 1 --profile --no-torch --rounds 1 --steps 40`, interleaved):
conv2 (32->32 5x5 on 12x12) forward 3.13-3.16 vs 3.29-3.36 ms, backward 5.77-5.81 vs
7.35-7.49 ms; conv1 (1->32 5x5, blocked) backward 0.93 vs 1.14-1.16 ms, forward 1.48 vs
1.51-1.54 ms; step 18.7-19.1 vs 20.7-21.3 ms. What is left is OpenBLAS: the three conv2
GEMMs (210 MFLOP each) took 2.6, 2.8 and 2.2 ms alone (81, 75, 95 GFLOP/s; a 1024^3 sgemm
reached 103 on the same run), the layout kernels 0.1-0.35 ms each. Fresh pages are what
made the first version slow: a new 3 MB column buffer per chunk cost 1.2 ms of page faults,
hence the reused one (_columns). conv1's columns: 0.21 ms (the 2x2-pooled even/odd split)
against NumPy's 0.45 ms.
"""
from __future__ import annotations

import ctypes

import numpy as np

from .. import native
from .conv_chunked import COLUMN_BYTES  # noqa: F401  (tests and benches set it here)
from .conv_direct import MAX_CHANNELS

_P, _I = ctypes.c_void_p, ctypes.c_int64


def applies(x, c_in: int, backend=None) -> bool:
    """Whether the channels-last path below runs (conv_direct's inputs excluded)."""
    return c_in > MAX_CHANNELS and applies_direct(x, backend)


def applies_direct(x, backend=None) -> bool:
    """Whether the compiled columns run (conv.py asks only where conv_direct applies)."""
    return native.runs(x, "cpu_conv", backend) and x.shape[0] > 0 and x.flags.c_contiguous


def _fn(name, dtype, nargs):
    return native.function(name + native.suffix(dtype), *([_P] * nargs[0] + [_I] * nargs[1]
                                                          + [_P] * nargs[2]))


def _to_nhwc(a):
    n, c = a.shape[:2]
    hw = a.size // max(1, n * c)
    out = np.empty((n, hw, c), dtype=a.dtype)
    _fn("dpn_conv_to_nhwc", a.dtype, (1, 3, 1))(native.ptr(a), n, c, hw, native.ptr(out))
    return out


def _to_nchw(y, bias, n, c, oh, ow):
    out = np.empty((n, c, oh, ow), dtype=y.dtype)
    b = native.ptr(bias, y.dtype) if bias is not None else None
    _fn("dpn_conv_to_nchw", y.dtype, (2, 3, 1))(native.ptr(y), b, n, oh * ow, c,
                                                native.ptr(out))
    return out


def _im2col(x_nhwc, s, e, geom, cols):
    _, h, w, c = x_nhwc.shape
    kh, kw, stride, pad, oh, ow = geom
    _fn("dpn_conv_im2col", x_nhwc.dtype, (1, 10, 1))(
        x_nhwc[s:e].ctypes.data, e - s, h, w, c, kh, kw, stride, pad, oh, ow, native.ptr(cols))


_workspace: dict = {}


def _columns(rows: int, k: int, dtype) -> np.ndarray:
    """A (rows, k) buffer reused across calls: fresh megabytes each chunk would be fresh
    pages, and their first-touch faults cost more than im2col itself (measured 4x)."""
    buf = _workspace.get(np.dtype(dtype))
    if buf is None or buf.size < rows * k:
        buf = _workspace[np.dtype(dtype)] = np.empty(rows * k, dtype=dtype)
    return buf[:rows * k].reshape(rows, k)


def _chunks(n, rows, k, itemsize):
    per = max(1, COLUMN_BYTES // max(1, rows * k * itemsize))
    for s in range(0, n, per):
        yield s, min(n, s + per)


def forward(x, w, bias, stride, pad, oh, ow):
    """(y (N, c_out, OH, OW), x_nhwc for backward) of x (N, C, H, W), w (c_out, C, kh, kw)."""
    n, c, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    x_nhwc = _to_nhwc(x).reshape(n, h, wd, c)
    w_t = np.ascontiguousarray(w.transpose(2, 3, 1, 0).reshape(-1, c_out))   # (kh*kw*C, c_out)
    rows, geom = oh * ow, (kh, kw, stride, pad, oh, ow)
    y = np.empty((n * rows, c_out), dtype=x.dtype)
    for s, e in _chunks(n, rows, w_t.shape[0], x.itemsize):
        cols = _columns((e - s) * rows, w_t.shape[0], x.dtype)
        _im2col(x_nhwc, s, e, geom, cols)
        np.matmul(cols, w_t, out=y[s * rows:e * rows])
    return _to_nchw(y, bias, n, c_out, oh, ow), x_nhwc


def backward(x_nhwc, dy, w, stride, pad, need_dx):
    """(dW shaped as w, db (c_out,), dX (N, C, H, W) or None) from dY (N, c_out, OH, OW)."""
    n, h, wd, c = x_nhwc.shape
    c_out, _, kh, kw = w.shape
    oh, ow = dy.shape[2], dy.shape[3]
    rows, geom = oh * ow, (kh, kw, stride, pad, oh, ow)
    dy2 = _to_nhwc(np.ascontiguousarray(dy)).reshape(n * rows, c_out)
    w_m = np.ascontiguousarray(w.transpose(0, 2, 3, 1).reshape(c_out, -1))   # (c_out, K)
    k = w_m.shape[1]
    dw = np.zeros((c_out, k), dtype=dy.dtype)
    part = np.empty_like(dw)
    dx = np.empty((n, h, wd, c), dtype=dy.dtype) if need_dx else None
    col2im = _fn("dpn_conv_col2im", dy.dtype, (1, 10, 1))
    for s, e in _chunks(n, rows, k, dy.itemsize):
        cols = _columns((e - s) * rows, k, dy.dtype)
        _im2col(x_nhwc, s, e, geom, cols)
        d = dy2[s * rows:e * rows]
        np.matmul(d.T, cols, out=part)
        dw += part
        if need_dx:
            np.matmul(d, w_m, out=cols)                     # the columns' gradient, in place
            col2im(cols.ctypes.data, e - s, h, wd, c, kh, kw, stride, pad, oh, ow,
                   dx[s:e].ctypes.data)
    db = dy2.sum(axis=0)
    dw = dw.reshape(c_out, kh, kw, c).transpose(0, 3, 1, 2)
    if dx is not None:
        dx = _to_nchw(dx.reshape(n, h * wd, c), None, n, c, h, wd)
    return dw, db, dx


# conv_direct.py's NCHW path (few input channels): compiled columns, written window offset
# first when the linked batch norm takes them blocked, with a row of ones when the layer has
# a bias, so that the per-sample GEMM adds the bias and the dW GEMM sums dY (db) as well.

def direct_columns(x, kh, kw, stride, pad, oh, ow, block, ones):
    """x (N, C, H, W) -> (N, C*kh*kw (+1 with ones), OH*OW), as conv_direct.columns."""
    n, c, h, w = x.shape
    cols = np.empty((n, c * kh * kw + (1 if ones else 0), oh * ow), dtype=x.dtype)
    _fn("dpn_conv_columns", x.dtype, (1, 12, 1))(
        native.ptr(x), n, c, h, w, kh, kw, stride, pad, oh, ow, block or 1, int(bool(ones)),
        native.ptr(cols))
    return cols


def direct_forward(cols, w_matrix, bias, oh, ow):
    """y (N, c_out, OH, OW) (positions in the columns' order) of direct_columns' cols."""
    if bias is not None:
        w_matrix = np.concatenate([w_matrix, bias.reshape(-1, 1)], axis=1)
    y = np.matmul(w_matrix, cols)
    return y.reshape(y.shape[0], y.shape[1], oh, ow)


def direct_weight_grads(dy, cols, grad_w, grad_b):
    """dW (and db from the ones row, when grad_b is not None) into the grads."""
    d = dy.reshape(dy.shape[0], dy.shape[1], -1)
    g = np.matmul(d, cols.transpose(0, 2, 1)).sum(axis=0)
    k = grad_w[0].size
    grad_w[...] = g[:, :k].reshape(grad_w.shape)
    if grad_b is not None:
        grad_b[...] = g[:, k]
