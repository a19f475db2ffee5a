"""The CUDA kernels compiled for the CPU with g++, for the tests and for
`dptrain bench --kernel-ops` without a GPU.

A shim maps CUDA's names to C++: a grid-stride kernel launched for n elements runs directly
as one block of one thread (it visits every element). A reduction launched with (grid,
block) runs its blocks one after another on ``block`` real threads: ``__shared__``
variables are function statics (one block is alive at a time; a barrier ends each block),
``__syncthreads`` is a barrier, ``threadIdx`` and ``blockIdx`` are thread-local. The
block's tree and the combine of the blocks' partial results so run as on a GPU, with a
smaller block (``reduce_block``).
"""
from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np

from .compile import signatures, source_for

SHIM = r"""
#include <pthread.h>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>
struct Dim { unsigned x; };
static thread_local Dim threadIdx = {0}, blockIdx = {0};
static Dim blockDim = {1}, gridDim = {1};
static pthread_barrier_t block_barrier;
#define __global__
#define __device__
#define __shared__ static
#define __restrict__ __restrict
static inline void __syncthreads() { pthread_barrier_wait(&block_barrier); }
"""

# Runs a kernel's blocks one after another on ``block`` threads; the arguments come
# as CUDA's cuLaunchKernel takes them, an array of pointers to each argument's value.
LAUNCHER = r"""
template <typename... A, std::size_t... I>
static void call_packed(void (*k)(A...), void** args, std::index_sequence<I...>)
{
    k(*static_cast<std::remove_cv_t<A>*>(args[I])...);
}

template <typename... A>
static void host_launch(void (*k)(A...), unsigned grid, unsigned block, void** args)
{
    gridDim.x = grid; blockDim.x = block;
    pthread_barrier_init(&block_barrier, nullptr, block);
    auto run_blocks = [=](unsigned t) {
        threadIdx.x = t;
        for (unsigned b = 0; b < grid; ++b) {
            blockIdx.x = b;
            call_packed(k, args, std::index_sequence_for<A...>{});
            if (block > 1) __syncthreads();   /* the block ends before its shared memory is reused */
        }
        threadIdx.x = 0; blockIdx.x = 0;
    };
    if (block == 1) {
        run_blocks(0);                        /* nothing to meet: the calling thread */
    } else {
        std::vector<std::thread> threads;
        for (unsigned t = 0; t < block; ++t) threads.emplace_back(run_blocks, t);
        for (auto& th : threads) th.join();
    }
    pthread_barrier_destroy(&block_barrier);
    blockDim.x = 1; gridDim.x = 1;
}
"""

C_TYPES = {"p": ctypes.c_void_p, "q": ctypes.c_longlong, "i": ctypes.c_int}


def available() -> bool:
    return shutil.which("g++") is not None


def _wrappers() -> str:
    return "".join(f'extern "C" void launch_{name}(unsigned g, unsigned b, void** a) '
                   f'{{ host_launch({name}, g, b, a); }}\n' for name in signatures())


def build(directory, reduce_block: int = 4, reduce_blocks: int = 64, optimize: str = "-O1"):
    """A factory dtype -> launcher, as compile.cupy_launcher. ``reduce_block`` threads run
    each block of a reduction; ``reduce_blocks`` is the grid size the reductions aim at."""
    directory = Path(directory)
    libs = {}
    for dtype in ("float32", "float64"):
        src, lib = directory / f"k_{dtype}.cpp", directory / f"k_{dtype}.so"
        src.write_text(SHIM + source_for(dtype) + LAUNCHER + _wrappers())
        subprocess.run(["g++", "-std=c++17", optimize, "-pthread", "-shared", "-fPIC", "-o",
                        str(lib), str(src)], check=True)
        libs[dtype] = ctypes.CDLL(str(lib))
    kinds_of = signatures()

    def for_dtype(dtype):
        lib = libs[np.dtype(dtype).name]
        scalar = ctypes.c_float if np.dtype(dtype) == np.float32 else ctypes.c_double

        def launch(name, n, *args):
            kinds = kinds_of[name]
            assert len(kinds) == len(args), name
            for k, a in zip(kinds, args):
                assert k != "p" or (isinstance(a, np.ndarray) and a.flags.c_contiguous
                                    or name == "im2col_nhwc"), (name, "a pointer to a strided array")
            values = [C_TYPES.get(k, scalar)(a.ctypes.data if k == "p" else a)
                      for k, a in zip(kinds, args)]
            if isinstance(n, tuple):             # a block reduction: real threads, a barrier
                grid, block = n
                assert block & (block - 1) == 0 and grid >= 1, (name, n)
                packed = (ctypes.c_void_p * len(values))(*[ctypes.addressof(v) for v in values])
                getattr(lib, f"launch_{name}")(ctypes.c_uint(grid), ctypes.c_uint(block), packed)
            else:                                # a grid-stride loop: one thread visits all
                getattr(lib, name)(*values)
        launch.reduce_block = reduce_block
        launch.reduce_blocks = reduce_blocks
        return launch
    return for_dtype
