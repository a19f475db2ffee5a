"""Hand-written CUDA kernels for the layers where one kernel replaces several generic ones.

    im2col_nhwc   the padded copy and the strided window copy of kernels.im2col, in one pass
    col2im_nhwc   kh*kw strided scatter-adds plus the unpadding copy, as one gather (no atomics)
    maxpool_*     the window scan with its arg-max, and a gather backward that reads it
    bn_*          batch norm's normalise-scale-shift and its input gradient, each fused

Every kernel is a grid-stride loop over its output elements. That makes the same source
valid C++ when run with one block of one thread, which is how tests/nn/test_cuda_kernels.py
checks it on a machine without a GPU (compiled with g++, against the generic NumPy path);
on a GPU, CuPy compiles it with NVRTC. Arguments are described once (``SIGNATURES``) for
both launchers. Sums run in the same order as the generic code, so results agree closely.
"""
from __future__ import annotations

import functools

import numpy as np

SOURCE = r"""
#define GRID_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)

/* The output position (along one axis) whose window puts kernel offset k on input
   coordinate x, or -1 when no window does: the gathers below invert the windows with it. */
__device__ inline int window_at(int x, int k, int stride, int pad, int out)
{
    int t = x + pad - k;
    if (t < 0 || t % stride) return -1;
    t /= stride;
    return t < out ? t : -1;
}

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
        T acc = 0;
        for (int i = 0; i < KH; ++i) {
            int oh = window_at(h, i, stride, pad, OH);
            for (int j = 0; oh >= 0 && j < KW; ++j) {
                int ow = window_at(w, j, stride, pad, OW);
                long long o = (nc * OH + oh) * OW + ow;
                if (ow >= 0 && arg[o] == i * KW + j)
                    acc += dy[o];
            }
        }
        dx[idx] = acc;
    }
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

# p: array pointer, q: 64-bit integer, i: 32-bit integer, t: a scalar of the element type
SIGNATURES = {
    "im2col_nhwc": "ppqiiiiiiiiiqqqq",
    "col2im_nhwc": "ppqiiiiiiiiii",
    "maxpool_forward": "pppqiiiiiiiit",
    "maxpool_backward": "pppqiiiiiiii",
    "bn_normalize": "pppppppqiq",
    "bn_input_grad": "pppppppqiq",
}

TYPES = {"float32": "float", "float64": "double"}


def source_for(dtype) -> str:
    return f"typedef {TYPES[np.dtype(dtype).name]} T;\n" + SOURCE


@functools.lru_cache(maxsize=None)
def _cupy_module(dtype_name: str):
    from .. import backend
    cupy = backend.cupy_module()
    return cupy.RawModule(code=source_for(dtype_name), options=("--std=c++14",))


def cupy_launcher(dtype):
    """Runs a kernel of SOURCE on the current CUDA stream, 256 threads a block."""
    module = _cupy_module(np.dtype(dtype).name)
    scalar = np.dtype(dtype).type

    def launch(name: str, n: int, *args):
        kinds = SIGNATURES[name]
        cast = {"p": lambda a: a, "q": np.int64, "i": np.int32, "t": scalar}
        blocks = max(1, min((n + 255) // 256, 65535))
        module.get_function(name)((blocks,), (256,), tuple(cast[k](a) for k, a in zip(kinds, args)))
    return launch


def _launcher(a, launch):
    return launch if launch is not None else cupy_launcher(a.dtype)


# Set by tests only: a factory (dtype -> launcher) running the kernels compiled for the CPU,
# so that whole models can be trained through the layers' kernel dispatch without a GPU.
host_launcher = None

# Each family is switched on or off as a whole (backend.kernels), so that a kernel that
# does not beat the generic array code on a GPU can be left out (`dptrain bench --kernel-ops`).
FAMILIES = ("im2col", "col2im", "maxpool", "batchnorm")


def launcher_for(a, family: str):
    """How to run ``family``'s kernels on ``a``'s device, or None for the generic array
    code: CuPy arrays take the kernels of the families backend.kernels enables."""
    from .. import backend
    if not backend.kernels_enabled(family):
        return None
    if type(a).__module__.startswith("cupy"):
        return cupy_launcher(a.dtype)
    return host_launcher(a.dtype) if host_launcher is not None else None


# --- the operations, for any array module with a launcher --------------------------------
def _xp(a):
    from ..backend import get_array_module
    return get_array_module(a)


def im2col(x_nhwc, kh: int, kw: int, stride: int, pad: int, launch=None):
    """As kernels.im2col: (N, H, W, C) -> (N*OH*OW, kh*kw*C), padding read as zeros. ``x``
    may be any strided view (the convolution passes NCHW transposed), read in place."""
    x = x_nhwc
    if any(st % x.itemsize for st in x.strides):
        x = _xp(x).ascontiguousarray(x)
    n, h, w, c = x.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    cols = _xp(x).empty((n * oh * ow, kh * kw * c), dtype=x.dtype)
    _launcher(x, launch)("im2col_nhwc", cols.size, x, cols, cols.size, h, w, c, oh, ow, kh, kw,
                         stride, pad, *(st // x.itemsize for st in x.strides))
    return cols


def col2im(blocks, x_shape_nhwc, kh: int, kw: int, stride: int, pad: int, launch=None):
    """As kernels.col2im: per-offset blocks (kh*kw, N*OH*OW, C) summed into (N, H, W, C)."""
    blocks = _xp(blocks).ascontiguousarray(blocks)
    n, h, w, c = x_shape_nhwc
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    out = _xp(blocks).empty((n, h, w, c), dtype=blocks.dtype)
    _launcher(blocks, launch)("col2im_nhwc", out.size, blocks, out, out.size, n, h, w, c, oh, ow,
                              kh, kw, stride, pad)
    return out


def maxpool_forward(x, kh: int, kw: int, stride: int, pad: int, launch=None):
    """(N, C, H, W) -> (max of each window, its flat position in the window as int32)."""
    xp = _xp(x)
    x = xp.ascontiguousarray(x)
    n, c, h, w = x.shape
    oh, ow = (h + 2 * pad - kh) // stride + 1, (w + 2 * pad - kw) // stride + 1
    y = xp.empty((n, c, oh, ow), dtype=x.dtype)
    arg = xp.empty((n, c, oh, ow), dtype=np.int32)
    _launcher(x, launch)("maxpool_forward", y.size, x, y, arg, y.size, h, w, oh, ow, kh, kw,
                         stride, pad, -np.inf)
    return y, arg


def maxpool_backward(dy, arg, x_shape, kh: int, kw: int, stride: int, pad: int, launch=None):
    xp = _xp(dy)
    dy = xp.ascontiguousarray(dy)
    _, _, h, w = x_shape
    oh, ow = dy.shape[2:]
    dx = xp.empty(x_shape, dtype=dy.dtype)
    _launcher(dy, launch)("maxpool_backward", dx.size, dy, arg, dx, dx.size, h, w, oh, ow, kh, kw,
                          stride, pad)
    return dx


def _channels(x):
    """(number of channels, elements per channel and sample) of an (N, F) or (N, C, H, W) array."""
    return x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))


def bn_normalize(x, mean, inv_std, gamma, beta, launch=None):
    """(xhat, y) with xhat = (x - mean) * inv_std and y = xhat * gamma + beta, per channel."""
    xp = _xp(x)
    x = xp.ascontiguousarray(x)
    xhat, y = xp.empty_like(x), xp.empty_like(x)
    c, hw = _channels(x)
    per_channel = [xp.ascontiguousarray(v, dtype=x.dtype) for v in (mean, inv_std, gamma, beta)]
    _launcher(x, launch)("bn_normalize", x.size, x, *per_channel, xhat, y, x.size, c, hw)
    return xhat, y


def bn_input_grad(dy, xhat, scale, total, sum_dy, sum_dy_xhat, launch=None):
    """dx = scale * dy - scale / total * (sum_dy + xhat * sum_dy_xhat), per channel, where
    scale = gamma * inv_std (batch norm's input gradient)."""
    xp = _xp(dy)
    dy = xp.ascontiguousarray(dy)
    dx = xp.empty_like(dy)
    c, hw = _channels(dy)
    per_channel = [xp.ascontiguousarray(v, dtype=dy.dtype)
                   for v in (scale, scale / total, sum_dy, sum_dy_xhat)]
    _launcher(dy, launch)("bn_input_grad", dy.size, dy, xp.ascontiguousarray(xhat), *per_channel,
                          dx, dy.size, c, hw)
    return dx
