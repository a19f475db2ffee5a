"""Winograd convolution F(2x2, 3x3) (Lavin & Gray 2016), NumPy float32 only.

A 3x3 stride-1 convolution computes each 2x2 output tile from a 4x4 input tile with 16
products per (c_in, c_out) pair instead of 36: the input tiles are transformed
(V = B^T d B), the filters too (U = G g G^T), and the 16 transformed positions are 16
batched GEMMs (tiles x c_in) @ (c_in x c_out); the output is A^T M A. Backward runs the
adjoints: dM = A dY A^T, dV = dM U^T (then B dV B^T scattered into dX), dU = V^T dM
(then G^T dU G). Every transform is a few whole-array adds over strided views.

Inputs and outputs are NCHW; inside, the tiles are channels-last in a layout split by row and
column parity (the copies in and out replace the transposes conv.py's other paths pay).
Memory stays bounded as in conv_chunked.py: a few samples at a time (about TILE_BYTES
of transformed tiles), backward recomputes V per chunk instead of keeping it.

float32 only: float64 runs keep the im2col arithmetic their recordings hold bit for bit
(tests/recordings); Winograd rounds differently (within float32 tolerance).

Where --kernels runs the compiled cpu_winograd family, filter_transform returns F(4x4, 3x3)'s
U (36, C, c_out) and forward/backward hand it to winograd_native.py (transforms in C, about
twice as fast in all); the NumPy F(2x2) code below is the fallback and --kernels generic.
"""
from __future__ import annotations

import numpy as np

from .. import native
from . import winograd_native

TILE_BYTES = 1 << 20
DTYPES = (np.float32,)
MIN_CHANNELS = 16       # below, the thin (tiles x c_in) GEMMs lose to im2col's K = 9 c_in
_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])
_GG = np.kron(_G, _G)         # (16, 9): U[4a+b] = sum over (i, j) of G[a, i] G[b, j] W[3i+j]


def applies(x, c_in: int, kh: int, kw: int, stride: int, pad: int) -> bool:
    return (isinstance(x, np.ndarray) and x.dtype in DTYPES and x.shape[0] > 0
            and kh == kw == 3 and stride == 1 and pad in (0, 1) and c_in >= MIN_CHANNELS)


def filter_transform(w, backend=None):
    """W (c_out, c_in, 3, 3) -> U (16, c_in, c_out): one (16 x 9) @ (9 x c_in c_out) product;
    where ``backend`` runs the compiled kernels, F(4x4, 3x3)'s U (36, c_in, c_out) instead
    (forward and backward then take the compiled path)."""
    if native.runs(w, "cpu_winograd", backend):
        return winograd_native.filter_transform(w)
    c_out, c_in = w.shape[:2]
    w9 = w.transpose(2, 3, 1, 0).reshape(9, c_in * c_out)
    return (_GG.astype(w.dtype) @ w9).reshape(16, c_in, c_out)


def filter_adjoint(du):
    """dU (16, c_in, c_out) -> dW (c_out, c_in, 3, 3), the adjoint of filter_transform."""
    _, c_in, c_out = du.shape
    dw9 = _GG.T.astype(du.dtype) @ du.reshape(16, c_in * c_out)
    return dw9.reshape(3, 3, c_in, c_out).transpose(3, 2, 0, 1)


def _bt(d, out):
    """B^T along the first axis of ``out`` from the 4 views ``d``: out[k] = (B^T d)[k]."""
    np.subtract(d[0], d[2], out=out[0])
    np.add(d[1], d[2], out=out[1])
    np.subtract(d[2], d[1], out=out[2])
    np.subtract(d[1], d[3], out=out[3])


def _input_transform(x_par, th, tw):
    """x_par (n, 2, th+1, 2, tw+1, C), the padded input split by row and column parity (so
    that every pass below reads and writes long contiguous runs) -> V (4, 4, n, th, tw, C)."""
    n, c = x_par.shape[0], x_par.shape[-1]
    rows = np.empty((4, n, th, 2, tw + 1, c), dtype=x_par.dtype)
    _bt([x_par[:, i % 2, i // 2:i // 2 + th] for i in range(4)], rows)
    del x_par
    v = np.empty((4, 4, n, th, tw, c), dtype=rows.dtype)
    for a in range(4):
        _bt([rows[a][:, :, j % 2, j // 2:j // 2 + tw] for j in range(4)], v[a])
    return v


def _parity_split(x, pad, th, tw, extra):
    """x (n, C, H, W) zero-padded by ``pad`` (top/left) to (2(th+extra), 2(tw+extra)) and laid
    out as (n, 2, th+extra, 2, tw+extra, C): [:, i, t, j, s] is the pixel (2t+i, 2s+j)."""
    n, c, h, w = x.shape
    out = np.zeros((n, 2, th + extra, 2, tw + extra, c), dtype=x.dtype)
    for i in range(2):
        for j in range(2):               # pixel rows 2t+i-pad, channels last
            src = x[:, :, (i - pad) % 2::2, (j - pad) % 2::2].transpose(0, 2, 3, 1)
            t0, s0 = ((i - pad) % 2 + pad - i) // 2, ((j - pad) % 2 + pad - j) // 2
            out[:, i, t0:t0 + src.shape[1], j, s0:s0 + src.shape[2]] = src
    return out


def _parity_merge(par, pad, h, w):
    """The inverse layout of _parity_split: (n, 2, T, 2, S, C) -> (n, C, H, W) cropped (a
    view: the copy happens where it is assigned)."""
    n, _, t, _, s, c = par.shape
    full = par.transpose(0, 5, 2, 1, 4, 3).reshape(n, c, 2 * t, 2 * s)
    return full[:, :, pad:pad + h, pad:pad + w]


def _tiles(h, w, pad):
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    return oh, ow, (oh + 1) // 2, (ow + 1) // 2


def _chunks(n, per_sample_bytes):
    per = max(1, TILE_BYTES // max(1, per_sample_bytes))
    for s in range(0, n, per):
        yield s, min(n, s + per)


def forward(x, u, bias, pad):
    """y (N, c_out, OH, OW) of x (N, C, H, W); u the filter transform (16, C, c_out), or
    (36, C, c_out) for the compiled F(4x4, 3x3) (winograd_native.py)."""
    n, c, h, w = x.shape
    c_out = u.shape[2]
    oh, ow, th, tw = _tiles(h, w, pad)
    if u.shape[0] == winograd_native.POSITIONS:
        return winograd_native.forward(x, u, bias, pad, oh, ow)
    y = np.empty((n, c_out, oh, ow), dtype=x.dtype)
    for s, e in _chunks(n, 16 * th * tw * max(c, c_out) * x.itemsize):
        v = _input_transform(_parity_split(x[s:e], pad, th, tw, 1), th, tw)
        m = np.matmul(v.reshape(16, -1, c), u).reshape(4, 4, e - s, th, tw, c_out)
        del v                   # each temporary freed once used: the next reuses its pages
        # A^T M A: A^T = [[1, 1, 1, 0], [0, 1, -1, -1]], rows then columns
        r = np.empty((2, 4, e - s, th, tw, c_out), dtype=y.dtype)
        np.add(m[0], m[1], out=r[0])
        r[0] += m[2]
        np.subtract(m[1], m[2], out=r[1])
        r[1] -= m[3]
        del m
        full = np.empty((e - s, 2, th, 2, tw, c_out), dtype=y.dtype)
        for i in range(2):
            y0, y1 = full[:, i, :, 0], full[:, i, :, 1]
            np.add(r[i, 0], r[i, 1], out=y0)
            y0 += r[i, 2]
            np.subtract(r[i, 1], r[i, 2], out=y1)
            y1 -= r[i, 3]
        y[s:e] = _parity_merge(full, 0, oh, ow)
    if bias is not None:
        y += bias[:, None, None]
    return y


def _a_adjoint(d, out):
    """A along the first axis of ``out`` from the 2 views ``d`` (the adjoint of A^T)."""
    out[0] = d[0]
    np.add(d[0], d[1], out=out[1])
    np.subtract(d[0], d[1], out=out[2])
    np.negative(d[1], out=out[3])


def backward(x, dy, u, pad, need_dx, db=None):
    """(dW (c_out, C, 3, 3), dX (N, C, H, W) or None) from dy (N, c_out, OH, OW) and u as
    forward took it; ``db`` (c_out,), when given, receives the bias gradient."""
    n, c, h, w = x.shape
    c_out = u.shape[2]
    oh, ow, th, tw = _tiles(h, w, pad)
    if u.shape[0] == winograd_native.POSITIONS:
        du, dx = winograd_native.backward(x, dy, u, pad, need_dx, db)
        return winograd_native.filter_adjoint(du), dx
    if db is not None:
        dy.sum(axis=(0, 2, 3), out=db)
    du = np.zeros((16, c, c_out), dtype=x.dtype)
    dx = np.empty(x.shape, dtype=x.dtype) if need_dx else None
    u_t = np.ascontiguousarray(u.transpose(0, 2, 1)) if need_dx else None
    for s, e in _chunks(n, 16 * th * tw * max(c, c_out) * x.itemsize):
        k = e - s
        dyp = _parity_split(dy[s:e], 0, th, tw, 0)
        rows = np.empty((4, k, th, 2, tw, c_out), dtype=dy.dtype)
        _a_adjoint([dyp[:, 0], dyp[:, 1]], rows)
        dm = np.empty((4, 4, k, th, tw, c_out), dtype=dy.dtype)
        for a in range(4):
            _a_adjoint([rows[a][:, :, 0], rows[a][:, :, 1]], dm[a])
        del dyp, rows           # each temporary freed once used: the next reuses its pages
        dm = dm.reshape(16, -1, c_out)
        v = _input_transform(_parity_split(x[s:e], pad, th, tw, 1), th, tw).reshape(16, -1, c)
        du += np.matmul(v.transpose(0, 2, 1), dm)
        del v
        if need_dx:
            dv = np.matmul(dm, u_t).reshape(4, 4, k, th, tw, c)
            del dm
            dx[s:e] = _input_adjoint(dv, pad, h, w)
    return filter_adjoint(du), dx


def _bt_adjoint(dv, even, odd, length, axis):
    """B^T's adjoint of the 4 arrays ``dv`` (``length`` tiles along ``axis``), written at once
    into the ``even`` and ``odd`` positions (``length`` + 1 entries along ``axis``) of the
    overlapping 4-wide windows at stride 2: no zeroed buffer, no read-modify-write of whole
    windows. B^T rows: v0 = d0 - d2, v1 = d1 + d2, v2 = d2 - d1, v3 = d1 - d3, so
    d0 <- v0, d1 <- v1 - v2 + v3, d2 <- v1 + v2 - v0, d3 <- -v3; even[q] = d0[q] + d2[q-1],
    odd[q] = d1[q] + d3[q-1]."""
    def part(arr, start, stop):
        idx = [slice(None)] * arr.ndim
        idx[axis] = slice(start, stop)
        return arr[tuple(idx)]
    n = length
    part(even, 0, n)[...] = dv[0]
    part(even, n, n + 1)[...] = 0
    t = dv[1] + dv[2]
    t -= dv[0]
    part(even, 1, n + 1)[...] += t
    np.subtract(dv[1], dv[2], out=part(odd, 0, n))
    part(odd, 0, n)[...] += dv[3]
    part(odd, n, n + 1)[...] = 0
    part(odd, 1, n + 1)[...] -= dv[3]


def _input_adjoint(dv, pad, h, w):
    """dV (4, 4, n, th, tw, C) -> dX (n, C, H, W) (a view), through the parity layout."""
    _, _, n, th, tw, c = dv.shape
    rows = np.empty((4, n, th, 2, tw + 1, c), dtype=dv.dtype)
    for a in range(4):
        _bt_adjoint(dv[a], rows[a][:, :, 0], rows[a][:, :, 1], tw, axis=2)
    full = np.empty((n, 2, th + 1, 2, tw + 1, c), dtype=dv.dtype)
    _bt_adjoint(rows, full[:, 0], full[:, 1], th, axis=1)
    return _parity_merge(full, pad, h, w)
