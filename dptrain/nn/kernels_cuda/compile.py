"""The shared part of the CUDA kernels: the prelude every kernel source uses, assembling the
source for one element type, and launching it with CuPy (NVRTC) on the current stream.

Two kinds of kernel:
- grid-stride loops over their output elements (most of them): launched as
  ``launch(name, n, *args)``, any grid is right, one block of one thread included;
- block reductions (per-channel sums and statistics): a block per (channel, chunk) reduces
  its part in shared memory with a tree, ``launch(name, (grid, block), *args)``; a second
  small grid-stride kernel combines the chunks. ``block`` is a power of two, at most
  MAX_BLOCK; a launcher says which it prefers (``reduce_block``) and how many blocks fill
  its device (``reduce_blocks``).
"""
from __future__ import annotations

import functools

import numpy as np

from .grid import MAX_BLOCK

PRELUDE = r"""
#ifndef __CUDACC__          /* g++ (tests): NVRTC and nvcc have the float overloads built in */
#include <cmath>
using std::sqrt;
using std::fabs;
#endif

#define GRID_LOOP(i, n) \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \
         i += (long long)blockDim.x * gridDim.x)
#define MAX_BLOCK 256

/* The output position (along one axis) whose window puts kernel offset k on input
   coordinate x, or -1 when no window does: the gathers below invert the windows with it. */
__device__ inline int window_at(int x, int k, int stride, int pad, int out)
{
    int t = x + pad - k;
    if (t < 0 || t % stride) return -1;
    t /= stride;
    return t < out ? t : -1;
}

/* The gradient that max-pooling sends back to input (h, w) of plane nc: the sum of dy over
   the windows whose stored arg-max is that input, and, when ``y`` is given (a pooled ReLU),
   whose pooled output is positive. A gather: no atomics, no per-offset launches. */
__device__ inline T pooled_grad(const T* __restrict__ dy, const int* __restrict__ arg,
        const T* __restrict__ y, long long nc, int h, int w, int OH, int OW, int KH, int KW,
        int stride, int pad)
{
    T acc = 0;
    for (int i = 0; i < KH; ++i) {
        int oh = window_at(h, i, stride, pad, OH);
        for (int j = 0; oh >= 0 && j < KW; ++j) {
            int ow = window_at(w, j, stride, pad, OW);
            long long o = (nc * OH + oh) * OW + ow;
            if (ow >= 0 && arg[o] == i * KW + j && (y == 0 || y[o] > 0))
                acc += dy[o];
        }
    }
    return acc;
}

/* The elements of channel c of an (N, C, HW) array that thread threadIdx.x of a block
   reduces: chunk k of the channel's N*HW elements, every blockDim.x-th (adjacent threads read
   adjacent addresses). Row and column advance without a division per element. */
struct ChannelWalk {
    long long j, end, row, C, c;
    unsigned col, HW;                 /* a feature map holds under 2**32 values: 32-bit division */
    __device__ ChannelWalk(int C_, long long HW_, long long per_channel, int chunks)
    {
        C = C_; HW = (unsigned)HW_; c = blockIdx.x / chunks;
        int k = blockIdx.x % chunks;
        j = per_channel * k / chunks + threadIdx.x;
        end = per_channel * (k + 1) / chunks;
        row = j / HW; col = (unsigned)(j % HW);
    }
    __device__ bool more() const { return j < end; }
    __device__ long long at() const { return (row * C + c) * HW + col; }
    __device__ void next()
    {
        j += blockDim.x; col += blockDim.x;
        if (col >= HW) { row += col / HW; col %= HW; }
    }
};

/* Sums a and b over the block with a tree in shared memory; thread 0 writes the totals. */
__device__ inline void block_sum_pair(T a, T b, T* out_a, T* out_b)
{
    __shared__ T s_a[MAX_BLOCK], s_b[MAX_BLOCK];
    int t = threadIdx.x;
    s_a[t] = a; s_b[t] = b;
    __syncthreads();
    for (int half = blockDim.x / 2; half > 0; half /= 2) {
        if (t < half) { s_a[t] += s_a[t + half]; s_b[t] += s_b[t + half]; }
        __syncthreads();
    }
    if (t == 0) { *out_a = s_a[0]; *out_b = s_b[0]; }
}

/* The chunks' partial sums of each channel, added in chunk order. */
extern "C" __global__ void sum_pairs_combine(const T* __restrict__ part_a,
        const T* __restrict__ part_b, T* __restrict__ a, T* __restrict__ b, int C, int chunks)
{
    GRID_LOOP(c, C) {
        T sa = 0, sb = 0;
        for (int k = 0; k < chunks; ++k) {
            sa += part_a[c * chunks + k];
            sb += part_b[c * chunks + k];
        }
        a[c] = sa;
        b[c] = sb;
    }
}
"""

# p: array pointer, q: 64-bit integer, i: 32-bit integer, t: a scalar of the element type
PRELUDE_SIGNATURES = {"sum_pairs_combine": "ppppii"}

TYPES = {"float32": "float", "float64": "double"}


def _parts():
    """Every hand-written kernel of dptrain, one NVRTC module: the layers' and the optimiser's."""
    from . import conv, fused, norm, optimizer, pool
    return (conv, pool, norm, fused, optimizer)


def source() -> str:
    return PRELUDE + "".join(part.SOURCE for part in _parts())


def signatures() -> dict:
    out = dict(PRELUDE_SIGNATURES)
    for part in _parts():
        out.update(part.SIGNATURES)
    return out


def source_for(dtype) -> str:
    return f"typedef {TYPES[np.dtype(dtype).name]} T;\n" + source()


@functools.lru_cache(maxsize=None)
def _cupy_module(dtype_name: str):
    from ... import backend
    cupy = backend.cupy_module()
    return cupy.RawModule(code=source_for(dtype_name), options=("--std=c++14",))


def cupy_launcher(dtype):
    """Runs a kernel on the current CUDA stream: grid-stride kernels with 256 threads a block,
    reductions with the (grid, block) they ask for."""
    return _cupy_launcher(np.dtype(dtype).name)


@functools.lru_cache(maxsize=None)          # one per dtype: nothing rebuilt per launch
def _cupy_launcher(dtype_name: str):
    module = _cupy_module(dtype_name)
    cast = {"p": lambda a: a, "q": np.int64, "i": np.int32, "t": np.dtype(dtype_name).type}
    kinds_of = signatures()
    kernels = {}                    # name -> (RawKernel, its arguments' casts)

    def launch(name: str, n, *args):
        if isinstance(n, tuple):
            grid, block = n
        else:
            grid, block = max(1, min((n + 255) // 256, 65535)), 256
        kernel = kernels.get(name)
        if kernel is None:          # get_function builds a new RawKernel every time it is called
            kernel = kernels[name] = (module.get_function(name),
                                      tuple(cast[k] for k in kinds_of[name]))
        function, casts = kernel
        function((grid,), (block,), tuple(c(a) for c, a in zip(casts, args)))
    launch.reduce_block = MAX_BLOCK
    launch.reduce_blocks = 1024           # a few blocks per SM of an H100 (132 SMs)
    return launch
