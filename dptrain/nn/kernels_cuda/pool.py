"""Max-pooling's kernels: the window scan with its arg-max, and a gather backward reading it."""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module

SOURCE = r"""
extern "C" __global__ void maxpool_forward(const T* __restrict__ x, T* __restrict__ y,
        int* __restrict__ arg, long long n_out, int H, int W, int OH, int OW, int KH, int KW,
        int stride, int pad, T outside)
{
    GRID_LOOP(idx, n_out) {
        long long r = idx;
        int ow = r % OW; r /= OW;
        int oh = r % OH; long long nc = r / OH;
        T best = outside;
        int best_k = 0;
        for (int i = 0; i < KH; ++i) {
            int h = oh * stride - pad + i;
            for (int j = 0; j < KW; ++j) {
                int w = ow * stride - pad + j;
                T v = (h >= 0 && h < H && w >= 0 && w < W) ? x[(nc * H + h) * W + w] : outside;
                if ((i == 0 && j == 0) || v > best) {      /* the first maximum wins */
                    best = v;
                    best_k = i * KW + j;
                }
            }
        }
        y[idx] = best;
        arg[idx] = best_k;
    }
}

extern "C" __global__ void maxpool_backward(const T* __restrict__ dy, const int* __restrict__ arg,
        T* __restrict__ dx, long long n_in, int H, int W, int OH, int OW, int KH, int KW,
        int stride, int pad)
{
    GRID_LOOP(idx, n_in) {
        long long r = idx;
        int w = r % W; r /= W;
        int h = r % H; long long nc = r / H;
        dx[idx] = pooled_grad(dy, arg, (const T*)0, nc, h, w, OH, OW, KH, KW, stride, pad);
    }
}
"""

SIGNATURES = {"maxpool_forward": "pppqiiiiiiiit", "maxpool_backward": "pppqiiiiiiii"}


def pooling_outputs(x, kh: int, kw: int, stride: int, pad: int):
    """For a max-pooling kernel over (N, C, H, W) ``x``: x contiguous, (C, H, W, OH, OW), and
    the pooled output and its arg-max (int32), to be filled."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    y = xp.empty((n, c, oh, ow), dtype=x.dtype)
    return x, (c, h, w, oh, ow), y, xp.empty((n, c, oh, ow), dtype=np.int32)


def maxpool_forward(x, kh: int, kw: int, stride: int, pad: int, launch):
    """(N, C, H, W) -> (max of each window, its flat position in the window as int32)."""
    x, (_, h, w, oh, ow), y, arg = pooling_outputs(x, kh, kw, stride, pad)
    launch("maxpool_forward", y.size, x, y, arg, y.size, h, w, oh, ow, kh, kw,
                               stride, pad, -np.inf)
    return y, arg


def maxpool_backward(dy, arg, x_shape, kh: int, kw: int, stride: int, pad: int, launch):
    xp = get_array_module(dy)
    dy = xp.ascontiguousarray(dy)
    _, _, h, w = x_shape
    oh, ow = dy.shape[2:]
    dx = xp.empty(x_shape, dtype=dy.dtype)
    launch("maxpool_backward", dx.size, dy, arg, dx, dx.size, h, w, oh, ow,
                                kh, kw, stride, pad)
    return dx
