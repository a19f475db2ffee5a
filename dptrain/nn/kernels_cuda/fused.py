"""BatchNorm -> ReLU -> MaxPool2D as one forward kernel and a two-kernel backward (the
``bn_relu_pool`` family; nn/fusion.py links the layers).

The forward normalises every element of a window (z = (x - mean) * inv_std * gamma + beta,
the unfused layers' arithmetic), takes the first maximum of z and writes relu of it: pooling
before normalising would be wrong for a channel whose gamma is negative, where the largest x
gives the smallest z. It stores the window offset of the maximum (int32), not xhat, the ReLU
output or the full-size normalised tensor. A window's gradient reaches its maximum only where
the output is positive, which is exactly the unfused chain's ReLU mask; the backward sums
dz and dz * xhat over the pooled outputs (xhat recomputed from x at the arg-max) and then
writes the input gradient in one gathering pass over x.
"""
from __future__ import annotations

from ...backend import get_array_module
from .grid import reduction_grid
from .norm import combine_sums, per_channel_args
from .pool import pooling_outputs

SOURCE = r"""
extern "C" __global__ void bn_relu_maxpool_forward(const T* __restrict__ x,
        const T* __restrict__ mean, const T* __restrict__ inv_std, const T* __restrict__ gamma,
        const T* __restrict__ beta, T* __restrict__ y, int* __restrict__ arg, long long n_out,
        int C, int H, int W, int OH, int OW, int KH, int KW, int stride, int pad)
{
    GRID_LOOP(idx, n_out) {
        long long r = idx;
        int ow = r % OW; r /= OW;
        int oh = r % OH; long long nc = r / OH;
        int c = nc % C;
        T m = mean[c], s = inv_std[c], g = gamma[c], b = beta[c];
        T best = 0;
        int best_k = -1;
        for (int i = 0; i < KH; ++i) {
            int h = oh * stride - pad + i;
            for (int j = 0; h >= 0 && h < H && j < KW; ++j) {
                int w = ow * stride - pad + j;
                if (w < 0 || w >= W) continue;              /* padding never wins */
                T v = (x[(nc * H + h) * W + w] - m) * s;
                T z = v * g + b;
                /* the first maximum wins; a NaN wins and stays, as in the unfused layers */
                if (best_k < 0 || z > best || (z != z && best == best)) {
                    best = z;
                    best_k = i * KW + j;
                }
            }
        }
        y[idx] = (best > 0 || best != best) ? best : (T)0;
        arg[idx] = best_k;
    }
}

/* Per channel sum(dz) and sum(dz * xhat) where dz is the gradient reaching BN's output: dy at
   each window's maximum where the pooled output is positive, nothing elsewhere. */
extern "C" __global__ void bn_relu_maxpool_grad_partial(const T* __restrict__ dy,
        const T* __restrict__ y, const int* __restrict__ arg, const T* __restrict__ x,
        const T* __restrict__ mean, const T* __restrict__ inv_std, T* __restrict__ part_dz,
        T* __restrict__ part_dz_xhat, int C, int H, int W, int OW, int KW, int stride, int pad,
        long long per_channel, int chunks, long long OHW)
{
    T a = 0, b = 0;
    for (ChannelWalk e(C, OHW, per_channel, chunks); e.more(); e.next()) {
        long long o = e.at();
        if (!(y[o] > 0)) continue;
        int k = arg[o];
        int h = (int)(e.col / OW) * stride - pad + k / KW, w = (int)(e.col % OW) * stride - pad + k % KW;
        int c = (int)e.c;
        T xh = (x[((e.row * C + c) * H + h) * W + w] - mean[c]) * inv_std[c];
        a += dy[o];
        b += dy[o] * xh;
    }
    block_sum_pair(a, b, part_dz + blockIdx.x, part_dz_xhat + blockIdx.x);
}

extern "C" __global__ void bn_relu_maxpool_input_grad(const T* __restrict__ dy,
        const T* __restrict__ y, const int* __restrict__ arg, const T* __restrict__ x,
        const T* __restrict__ mean, const T* __restrict__ inv_std, const T* __restrict__ scale,
        const T* __restrict__ scale_over_total, const T* __restrict__ sum_dz,
        const T* __restrict__ sum_dz_xhat, T* __restrict__ dx, long long n_in, int C, int H,
        int W, int OH, int OW, int KH, int KW, int stride, int pad)
{
    GRID_LOOP(idx, n_in) {
        long long r = idx;
        int w = r % W; r /= W;
        int h = r % H; long long nc = r / H;
        int c = nc % C;
        T acc = pooled_grad(dy, arg, y, nc, h, w, OH, OW, KH, KW, stride, pad);
        T xh = (x[idx] - mean[c]) * inv_std[c];
        dx[idx] = scale[c] * acc - scale_over_total[c] * (sum_dz[c] + xh * sum_dz_xhat[c]);
    }
}
"""

SIGNATURES = {
    "bn_relu_maxpool_forward": "pppppppqiiiiiiiii",
    "bn_relu_maxpool_grad_partial": "ppppppppiiiiiiiqiq",
    "bn_relu_maxpool_input_grad": "pppppppppppqiiiiiiiii",
}


def bn_relu_maxpool_forward(x, mean, inv_std, gamma, beta, kh, kw, stride, pad, launch):
    """maxpool(relu(gamma * (x - mean) * inv_std + beta)) of (N, C, H, W), and the window
    offset of each maximum (int32)."""
    xp = get_array_module(x)
    x, (c, h, w, oh, ow), y, arg = pooling_outputs(x, kh, kw, stride, pad)
    launch("bn_relu_maxpool_forward", y.size, x,
                               *per_channel_args(xp, x.dtype, mean, inv_std, gamma, beta), y, arg,
                               y.size, c, h, w, oh, ow, kh, kw, stride, pad)
    return y, arg


def bn_relu_maxpool_grad_sums(dy, y, arg, x, mean, inv_std, kw, stride, pad, launch,
                              chunks=None, out_dz=None, out_dz_xhat=None):
    """Per channel (sum(dz), sum(dz * xhat)) for dz, the gradient at the batch norm's output."""
    xp = get_array_module(dy)
    dy, x = xp.ascontiguousarray(dy), xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = dy.shape[2:]
    per_channel = n * oh * ow
    chunks, block = reduction_grid(launch, c, max(per_channel, 1), chunks)
    part_a, part_b = xp.empty(c * chunks, dtype=dy.dtype), xp.empty(c * chunks, dtype=dy.dtype)
    launch("bn_relu_maxpool_grad_partial", (c * chunks, block), dy, y, arg, x,
           *per_channel_args(xp, dy.dtype, mean, inv_std), part_a, part_b, c, h, w, ow, kw, stride,
           pad, per_channel, chunks, oh * ow)
    return combine_sums(launch, part_a, part_b, c, chunks, out_dz, out_dz_xhat)


def bn_relu_maxpool_input_grad(dy, y, arg, x, mean, inv_std, scale, total, sum_dz, sum_dz_xhat,
                               kh, kw, stride, pad, launch):
    """The gradient at the batch norm's input, as BatchNorm.backward of the unfused chain."""
    xp = get_array_module(dy)
    dy, x = xp.ascontiguousarray(dy), xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = dy.shape[2:]
    dx = xp.empty(x.shape, dtype=dy.dtype)
    per_channel = per_channel_args(xp, dy.dtype, mean, inv_std, scale, scale / total, sum_dz,
                               sum_dz_xhat)
    launch("bn_relu_maxpool_input_grad", dx.size, dy, y, arg, x,
                                *per_channel, dx, dx.size, c, h, w, oh, ow, kh, kw, stride, pad)
    return dx
