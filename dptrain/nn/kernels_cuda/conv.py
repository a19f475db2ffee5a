"""Convolution's kernels: im2col reading the input through strides (no transposed or padded
copy) and col2im as a gather (no atomics, no per-offset launches)."""
from __future__ import annotations

from ...backend import get_array_module

SOURCE = r"""
/* x is read through element strides, so a transposed view (NCHW seen as NHWC) needs no copy */
extern "C" __global__ void im2col_nhwc(const T* __restrict__ x, T* __restrict__ cols,
        long long n_out, int H, int W, int C, int OH, int OW, int KH, int KW, int stride, int pad,
        long long sN, long long sH, long long sW, long long sC)
{
    GRID_LOOP(idx, n_out) {
        long long r = idx;
        int c = r % C; r /= C;
        int j = r % KW; r /= KW;
        int i = r % KH; r /= KH;
        int ow = r % OW; r /= OW;
        int oh = r % OH; long long n = r / OH;
        int h = oh * stride - pad + i, w = ow * stride - pad + j;
        cols[idx] = (h >= 0 && h < H && w >= 0 && w < W) ? x[n * sN + h * sH + w * sW + c * sC] : (T)0;
    }
}

extern "C" __global__ void col2im_nhwc(const T* __restrict__ blocks, T* __restrict__ out,
        long long n_out, int N, int H, int W, int C, int OH, int OW, int KH, int KW, int stride, int pad)
{
    GRID_LOOP(idx, n_out) {
        long long r = idx;
        int c = r % C; r /= C;
        int w = r % W; r /= W;
        int h = r % H; long long n = r / H;
        T acc = 0;
        for (int i = 0; i < KH; ++i) {
            int oh = window_at(h, i, stride, pad, OH);
            for (int j = 0; oh >= 0 && j < KW; ++j) {
                int ow = window_at(w, j, stride, pad, OW);
                if (ow >= 0)
                    acc += blocks[((((long long)(i * KW + j) * N + n) * OH + oh) * OW + ow) * C + c];
            }
        }
        out[idx] = acc;
    }
}
"""

SIGNATURES = {"im2col_nhwc": "ppqiiiiiiiiiqqqq", "col2im_nhwc": "ppqiiiiiiiiii"}


def im2col(x_nhwc, kh: int, kw: int, stride: int, pad: int, launch):
    """As kernels.im2col: (N, H, W, C) -> (N*OH*OW, kh*kw*C), padding read as zeros. ``x``
    may be any strided view (the convolution passes NCHW transposed), read in place."""
    x = x_nhwc
    if any(st % x.itemsize for st in x.strides):
        x = get_array_module(x).ascontiguousarray(x)
    n, h, w, c = x.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    cols = get_array_module(x).empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    launch("im2col_nhwc", cols.size, x, cols, cols.size, h, w, c, oh, ow,
                               kh, kw, stride, pad, *(st // x.itemsize for st in x.strides))
    return cols


def col2im(blocks, x_shape_nhwc, kh: int, kw: int, stride: int, pad: int, launch):
    """As kernels.col2im: per-offset blocks (kh*kw, N*OH*OW, C) summed into (N, H, W, C)."""
    blocks = get_array_module(blocks).ascontiguousarray(blocks)
    n, h, w, c = x_shape_nhwc
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = get_array_module(blocks).empty((n, h, w, c), dtype=blocks.dtype)
    launch("col2im_nhwc", out.size, blocks, out, out.size, n, h, w, c,
                                    oh, ow, kh, kw, stride, pad)
    return out
