"""Convolution straight in NCHW for few input channels (a network's first layer), NumPy only.

Columns per sample, (C*kh*kw, OH*OW), come from a strided view of the input whose inner run
is a whole output row, and ``W (c_out, C*kh*kw) @ columns`` is the output of each sample in
NCHW: no transpose of the (large) output or of its gradient, which the channels-last path
(conv.py) pays twice per step and which costs more than the GEMM itself when C*kh*kw is small
(thesis-cnn's first layer: 4.7 MB transposed twice for a K = 25 product).

float32 only: float64 runs keep the channels-last arithmetic their recordings hold bit for
bit (tests/recordings).
"""
from __future__ import annotations

import numpy as np

from .kernels import out_size, pad_hw

MAX_CHANNELS = 4          # above, one large channels-last GEMM beats per-sample products
DTYPES = (np.float32,)


def applies(x, c_in: int) -> bool:
    return isinstance(x, np.ndarray) and x.dtype in DTYPES and c_in <= MAX_CHANNELS


def columns(x, kh: int, kw: int, stride: int, pad: int, block: int = 0):
    """x (N, C, H, W) -> (N, C*kh*kw, OH*OW), rows ordered as W's (c, i, j); with ``block``
    k the output positions come window offset first, (a, b, OH/k, OW/k) for the position
    (k*oh' + a, k*ow' + b), as fused_cpu.py pools them."""
    xp = np.ascontiguousarray(pad_hw(x, pad))
    n, c, h, w = xp.shape
    oh, ow = out_size(h, kh, stride, 0), out_size(w, kw, stride, 0)
    s0, s1, s2, s3 = xp.strides
    if block:
        k = block
        view = np.lib.stride_tricks.as_strided(
            xp, shape=(n, c, kh, kw, k, k, oh // k, ow // k),
            strides=(s0, s1, s2, s3, s2 * stride, s3 * stride, s2 * stride * k, s3 * stride * k))
    else:
        view = np.lib.stride_tricks.as_strided(
            xp, shape=(n, c, kh, kw, oh, ow), strides=(s0, s1, s2, s3, s2 * stride, s3 * stride))
    return view.reshape(n, c * kh * kw, oh * ow)


def forward(cols, w_matrix, bias, oh: int, ow: int):
    y = np.matmul(w_matrix, cols)                        # (N, c_out, OH*OW)
    if bias is not None:
        y += bias.reshape(1, -1, 1)
    return y.reshape(y.shape[0], y.shape[1], oh, ow)


def weight_grads(dy, cols, grad_w, grad_b):
    """dW = sum over samples of dY_n @ columns_n^T, db = sum of dY, written into the grads."""
    d = dy.reshape(dy.shape[0], dy.shape[1], cols.shape[-1])    # no -1: a rank may hold 0
    grad_w[...] = np.matmul(d, cols.transpose(0, 2, 1)).sum(axis=0).reshape(grad_w.shape)
    if grad_b is not None:
        d.sum(axis=(0, 2), out=grad_b)


def input_grad(dy, w_matrix, x_shape, kh: int, kw: int, stride: int, pad: int):
    """col2im of W^T @ dY_n, scattered one kernel offset at a time."""
    n, c, h, w = x_shape
    oh, ow = dy.shape[2], dy.shape[3]
    dcols = np.matmul(w_matrix.T, dy.reshape(n, dy.shape[1], -1)).reshape(n, c, kh, kw, oh, ow)
    dx = np.zeros((n, c, h + 2 * pad, w + 2 * pad), dtype=dy.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += dcols[:, :, i, j]
    return dx[:, :, pad:pad + h, pad:pad + w] if pad else dx
