"""The CUDA kernels of dptrain/nn/cuda_kernels.py compiled for the CPU (g++), for tests.

The kernels are grid-stride loops; run as one block of one thread they visit every element,
so the very source that NVRTC compiles on a GPU runs here under a small shim.
"""
import ctypes
import shutil
import subprocess

import numpy as np

from dptrain.nn import cuda_kernels as ck

SHIM = """
struct Dim { unsigned x; };
static const Dim threadIdx = {0}, blockIdx = {0}, blockDim = {1}, gridDim = {1};
#define __global__
#define __device__
#define __restrict__ __restrict
"""

C_TYPES = {"p": ctypes.c_void_p, "q": ctypes.c_longlong, "i": ctypes.c_int}


def available() -> bool:
    return shutil.which("g++") is not None


def build(directory):
    """A factory dtype -> launcher, with the signature of cuda_kernels.cupy_launcher."""
    libs = {}
    for dtype in ("float32", "float64"):
        src, lib = directory / f"k_{dtype}.cpp", directory / f"k_{dtype}.so"
        src.write_text(SHIM + ck.source_for(dtype))
        subprocess.run(["g++", "-O1", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
        libs[dtype] = ctypes.CDLL(str(lib))

    def for_dtype(dtype):
        lib = libs[np.dtype(dtype).name]
        scalar = ctypes.c_float if np.dtype(dtype) == np.float32 else ctypes.c_double

        def launch(name, n, *args):
            f = getattr(lib, name)
            kinds = ck.SIGNATURES[name]
            assert len(kinds) == len(args), name
            f.argtypes = [C_TYPES.get(k, scalar) for k in kinds]
            for k, a in zip(kinds, args):
                assert k != "p" or (isinstance(a, np.ndarray) and a.flags.c_contiguous
                                    or name == "im2col_nhwc"), (name, "a pointer to a strided array")
            f(*[a.ctypes.data if k == "p" else a for k, a in zip(kinds, args)])
        return launch
    return for_dtype
