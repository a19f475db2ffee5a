"""Hand-written CUDA kernels for the layers where one kernel replaces several generic ones,
and which of them a layer uses (``launcher_for``). The source lives in nn/kernels_cuda/:

    conv.py    im2col_nhwc, col2im_nhwc
    pool.py    maxpool_forward / _backward (stored arg-max, gather backward)
    norm.py    batch norm: statistics and backward sums in one pass each (block reductions),
               normalise-scale-shift and the input gradient fused
    fused.py   BatchNorm -> ReLU -> MaxPool2D in one forward kernel and a two-kernel backward

Most kernels are grid-stride loops over their output elements, so the same source is valid
C++ run with any grid; the reductions use shared memory and __syncthreads. On a GPU CuPy
compiles the source with NVRTC; kernels_cuda/host.py compiles it with g++ under a shim that
runs each block's threads as real threads meeting at a barrier, which is how the tests (and
`dptrain bench --kernel-ops` on a CPU) run it without a GPU.
"""
from __future__ import annotations

from ..backend import LAYER_KERNEL_FAMILIES, Backend, current, is_device_array
from .kernels_cuda import compile
from .kernels_cuda.compile import signatures, source_for  # noqa: F401
from .kernels_cuda.conv import col2im, im2col  # noqa: F401
from .kernels_cuda.fused import (bn_relu_maxpool_forward, bn_relu_maxpool_grad_sums,  # noqa: F401
                                 bn_relu_maxpool_input_grad)
from .kernels_cuda.norm import bn_grad_sums, bn_input_grad, bn_normalize, bn_stats  # noqa: F401
from .kernels_cuda.pool import maxpool_backward, maxpool_forward  # noqa: F401

SIGNATURES = signatures()

# Set by tests (and `dptrain bench --kernel-ops` on a CPU) only: a factory (dtype -> launcher)
# running the kernels compiled for the CPU, so that whole models can be trained through the
# layers' kernel dispatch without a GPU.
host_launcher = None

# Each family is switched on or off as a whole (a Backend's kernels), so that a kernel that
# does not beat the generic array code on a GPU can be left out (`dptrain bench --kernel-ops`).
FAMILIES = LAYER_KERNEL_FAMILIES      # named in backend.py, which checks --kernels


def launcher_for(a, family: str, backend: Backend | None = None):
    """How to run ``family``'s kernels on ``a``'s device, or None for the generic array
    code: CuPy arrays take the kernels of the families ``backend`` (a layer's, None: the
    process default) enables."""
    if not (backend or current()).kernels_enabled(family):
        return None
    if is_device_array(a):
        return compile.cupy_launcher(a.dtype)
    return host_launcher(a.dtype) if host_launcher is not None else None
