"""Batch norm's kernels, per channel over (N, C, H, W) or (N, F) without transposes:

    bn_stats_*      count, mean and sum of squared deviations in one pass over x: each thread
                    keeps Welford's running mean of x less the channel's first element, the
                    block and then the chunks merge theirs with Chan et al.'s formula, so
                    float32 stays accurate for data far from 0 (mean 1e3, std 1)
    bn_grad_*       sum(dy) and sum(dy * xhat) in one pass reading dy and xhat once
    bn_normalize    normalise, scale and shift in one pass (writes xhat and y)
    bn_input_grad   the input gradient from dy, xhat and the two sums
"""
from __future__ import annotations

import numpy as np

from ...backend import get_array_module
from .grid import reduction_grid

SOURCE = r"""
/* Chan et al.'s merge of the statistics (count, mean, sum of squared deviations) b into a */
__device__ inline void chan_merge(long long& n_a, T& mean_a, T& m2_a, long long n_b, T mean_b, T m2_b)
{
    if (n_b == 0) return;
    long long n = n_a + n_b;
    T delta = mean_b - mean_a, share = (T)n_b / (T)n;
    mean_a += delta * share;
    m2_a += m2_b + delta * delta * (T)n_a * share;
    n_a = n;
}

extern "C" __global__ void bn_stats_partial(const T* __restrict__ x, long long* __restrict__ part_n,
        T* __restrict__ part_mean, T* __restrict__ part_m2, int C, long long HW,
        long long per_channel, int chunks)
{
    __shared__ long long s_n[MAX_BLOCK];
    __shared__ T s_mean[MAX_BLOCK], s_m2[MAX_BLOCK];
    long long n = 0;
    T mean = 0, m2 = 0;
    ChannelWalk e(C, HW, per_channel, chunks);
    const T shift = x[e.c * HW];
    for (; e.more(); e.next()) {                                       /* Welford */
        T v = x[e.at()] - shift;
        T d = v - mean;
        mean += d / (T)(++n);
        m2 += d * (v - mean);
    }
    int t = threadIdx.x;
    s_n[t] = n; s_mean[t] = mean; s_m2[t] = m2;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half)
            chan_merge(s_n[t], s_mean[t], s_m2[t], s_n[t + half], s_mean[t + half], s_m2[t + half]);
        __syncthreads();
    }
    if (t == 0) {
        part_n[blockIdx.x] = s_n[0];
        part_mean[blockIdx.x] = s_mean[0];
        part_m2[blockIdx.x] = s_m2[0];
    }
}

extern "C" __global__ void bn_stats_combine(const T* __restrict__ x,
        const long long* __restrict__ part_n, const T* __restrict__ part_mean,
        const T* __restrict__ part_m2, T* __restrict__ mean, T* __restrict__ m2, int C,
        long long HW, int chunks)
{
    GRID_LOOP(c, C) {
        long long n = 0;
        T mu = 0, q = 0;
        for (int k = 0; k < chunks; ++k)
            chan_merge(n, mu, q, part_n[c * chunks + k], part_mean[c * chunks + k],
                       part_m2[c * chunks + k]);
        mean[c] = x[c * HW] + mu;
        m2[c] = q;
    }
}

extern "C" __global__ void bn_grad_partial(const T* __restrict__ dy, const T* __restrict__ xhat,
        T* __restrict__ part_dy, T* __restrict__ part_dy_xhat, int C, long long HW,
        long long per_channel, int chunks)
{
    T a = 0, b = 0;
    for (ChannelWalk e(C, HW, per_channel, chunks); e.more(); e.next()) {
        T g = dy[e.at()];
        a += g;
        b += g * xhat[e.at()];
    }
    block_sum_pair(a, b, part_dy + blockIdx.x, part_dy_xhat + blockIdx.x);
}

extern "C" __global__ void bn_normalize(const T* __restrict__ x, const T* __restrict__ mean,
        const T* __restrict__ inv_std, const T* __restrict__ gamma, const T* __restrict__ beta,
        T* __restrict__ xhat, T* __restrict__ y, long long n, int C, long long HW)
{
    GRID_LOOP(idx, n) {
        int c = (idx / HW) % C;
        T v = (x[idx] - mean[c]) * inv_std[c];
        xhat[idx] = v;
        y[idx] = v * gamma[c] + beta[c];
    }
}

extern "C" __global__ void bn_input_grad(const T* __restrict__ dy, const T* __restrict__ xhat,
        const T* __restrict__ scale, const T* __restrict__ scale_over_total,
        const T* __restrict__ sum_dy, const T* __restrict__ sum_dy_xhat, T* __restrict__ dx,
        long long n, int C, long long HW)
{
    GRID_LOOP(idx, n) {
        int c = (idx / HW) % C;
        dx[idx] = scale[c] * dy[idx] - scale_over_total[c] * (sum_dy[c] + xhat[idx] * sum_dy_xhat[c]);
    }
}
"""

SIGNATURES = {
    "bn_stats_partial": "ppppiqqi",
    "bn_stats_combine": "ppppppiqi",
    "bn_grad_partial": "ppppiqqi",
    "bn_normalize": "pppppppqiq",
    "bn_input_grad": "pppppppqiq",
}


def channels(x):
    """(number of channels, elements per channel and sample) of an (N, F) or (N, C, H, W) array."""
    return x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))


def per_channel_args(xp, dtype, *values):
    """Per-channel vectors as a kernel reads them: contiguous, of the element type."""
    return [xp.ascontiguousarray(v, dtype=dtype) for v in values]


def bn_stats(x, launch, chunks=None):
    """Per channel (mean, sum of squared deviations from it) of x, in one pass. An empty x
    gives zeros (a rank with no samples still joins --sync-bn's reductions)."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    c, hw = channels(x)
    mean, m2 = xp.zeros(c, dtype=x.dtype), xp.zeros(c, dtype=x.dtype)
    per_channel = x.shape[0] * hw
    if per_channel == 0:
        return mean, m2
    chunks, block = reduction_grid(launch, c, per_channel, chunks)
    part_n = xp.empty(c * chunks, dtype=np.int64)
    part_mean, part_m2 = xp.empty(c * chunks, dtype=x.dtype), xp.empty(c * chunks, dtype=x.dtype)
    launch("bn_stats_partial", (c * chunks, block), x, part_n, part_mean, part_m2, c, hw,
           per_channel, chunks)
    launch("bn_stats_combine", c, x, part_n, part_mean, part_m2, mean, m2, c, hw, chunks)
    return mean, m2


def combine_sums(launch, part_a, part_b, c: int, chunks: int, out_a=None, out_b=None):
    """The per-channel totals of two partial sums, written into out_a / out_b when given."""
    xp = get_array_module(part_a)
    a, b = (o if o is not None and o.flags.c_contiguous and o.dtype == part_a.dtype
            else xp.empty(c, dtype=part_a.dtype) for o in (out_a, out_b))
    launch("sum_pairs_combine", c, part_a, part_b, a, b, c, chunks)
    for result, out in ((a, out_a), (b, out_b)):
        if out is not None and result is not out:
            out[...] = result
    return a, b


def bn_grad_sums(dy, xhat, launch, chunks=None, out_dy=None, out_dy_xhat=None):
    """Per channel (sum(dy), sum(dy * xhat)), reading dy and xhat once."""
    xp = get_array_module(dy)
    dy, xhat = xp.ascontiguousarray(dy), xp.ascontiguousarray(xhat)
    c, hw = channels(dy)
    per_channel = dy.shape[0] * hw
    chunks, block = reduction_grid(launch, c, max(per_channel, 1), chunks)
    part_a, part_b = xp.empty(c * chunks, dtype=dy.dtype), xp.empty(c * chunks, dtype=dy.dtype)
    launch("bn_grad_partial", (c * chunks, block), dy, xhat, part_a, part_b, c, hw,
           per_channel, chunks)
    return combine_sums(launch, part_a, part_b, c, chunks, out_dy, out_dy_xhat)


def bn_normalize(x, mean, inv_std, gamma, beta, launch):
    """(xhat, y) with xhat = (x - mean) * inv_std and y = xhat * gamma + beta, per channel."""
    xp = get_array_module(x)
    x = xp.ascontiguousarray(x)
    xhat, y = xp.empty_like(x), xp.empty_like(x)
    c, hw = channels(x)
    launch("bn_normalize", x.size, x,
                               *per_channel_args(xp, x.dtype, mean, inv_std, gamma, beta),
                               xhat, y, x.size, c, hw)
    return xhat, y


def bn_input_grad(dy, xhat, scale, total, sum_dy, sum_dy_xhat, launch):
    """dx = scale * dy - scale / total * (sum_dy + xhat * sum_dy_xhat), per channel, where
    scale = gamma * inv_std (batch norm's input gradient)."""
    xp = get_array_module(dy)
    dy = xp.ascontiguousarray(dy)
    dx = xp.empty_like(dy)
    c, hw = channels(dy)
    per_channel = per_channel_args(xp, dy.dtype, scale, scale / total, sum_dy, sum_dy_xhat)
    launch("bn_input_grad", dy.size, dy, xp.ascontiguousarray(xhat),
                                *per_channel, dx, dy.size, c, hw)
    return dx
