"""Pure array kernels shared by the layers: im2col / col2im and strided window slices.

They work on numpy and cupy arrays alike (the module is taken from the input).
Loops run over kernel offsets only (kh * kw iterations), never over samples or
output positions.

Convolution works channels-last internally: in NHWC, the kw neighbouring
pixels of a window row and all their channels are one contiguous run of
kw * C values, so building the columns copies long runs instead of 5-float
snippets (about 3x faster than im2col straight from NCHW on a CPU).
"""
from __future__ import annotations

from ..backend import get_array_module
from . import cuda_kernels


def out_size(n: int, k: int, stride: int, pad: int) -> int:
    """(N - F + 2P) / S + 1, the convolution arithmetic of the course notes."""
    return (n + 2 * pad - k) // stride + 1


def pad_hw(x, pad: int, axes=(2, 3), value=0.0):
    """Zero (or ``value``) padding of the two spatial axes."""
    if not pad:
        return x
    xp = get_array_module(x)
    width = [(0, 0)] * x.ndim
    for a in axes:
        width[a] = (pad, pad)
    return xp.pad(x, width, constant_values=value)


def im2col(x_nhwc, kh: int, kw: int, stride: int, pad: int, backend=None):
    """x (N, H, W, C) -> columns (N*OH*OW, kh*kw*C), one row per output position; ``backend``
    (None: the default) says whether its kernel runs."""
    launch = cuda_kernels.launcher_for(x_nhwc, "im2col", backend)
    if launch is not None:                                # one kernel, no padded copy
        return cuda_kernels.im2col(x_nhwc, kh, kw, stride, pad, launch=launch)
    xp = get_array_module(x_nhwc)
    x = xp.ascontiguousarray(pad_hw(x_nhwc, pad, axes=(1, 2)))
    n, h, w, c = x.shape
    oh, ow = out_size(h, kh, stride, 0), out_size(w, kw, stride, 0)
    s0, s1, s2, s3 = x.strides
    view = xp.lib.stride_tricks.as_strided(
        x, shape=(n, oh, ow, kh, kw, c), strides=(s0, s1 * stride, s2 * stride, s1, s2, s3))
    return view.reshape(n * oh * ow, kh * kw * c)         # the reshape copies the windows


def col2im(blocks, x_shape_nhwc, kh: int, kw: int, stride: int, pad: int, backend=None):
    """Adjoint of im2col: scatter-add per-offset blocks (kh*kw, N*OH*OW, C) into (N, H, W, C).

    The column gradients come grouped by kernel offset (not in im2col's row layout), so
    that each add below reads one contiguous block and, for stride 1, writes runs of
    OW*C contiguous values.
    """
    launch = cuda_kernels.launcher_for(blocks, "col2im", backend)
    if launch is not None:                                # one gathering kernel
        return cuda_kernels.col2im(blocks, x_shape_nhwc, kh, kw, stride, pad, launch=launch)
    xp = get_array_module(blocks)
    n, h, w, c = x_shape_nhwc
    oh, ow = out_size(h, kh, stride, pad), out_size(w, kw, stride, pad)
    per_offset = blocks.reshape(kh, kw, n, oh, ow, c)
    out = xp.zeros((n, h + 2 * pad, w + 2 * pad, c), dtype=blocks.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, i:i + stride * oh:stride, j:j + stride * ow:stride, :] += per_offset[i, j]
    if pad:
        out = out[:, pad:pad + h, pad:pad + w, :]
    return out


def window_slices(kh: int, kw: int, stride: int, oh: int, ow: int):
    """For each kernel offset (i, j): the (flat offset, H slice, W slice) it reads in a padded input."""
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, slice(i, i + stride * oh, stride), slice(j, j + stride * ow, stride)
