"""The optimiser's update rules as CUDA kernels: one launch updates a whole flat group.

A flat group (optim/flat.py) holds many layers' parameters, gradients and state in buffers of
one layout, so each rule is a single element-wise grid-stride loop over it instead of several
array operations per parameter (PyTorch's multi-tensor-apply idea, without the tensor lists).
Hyper-parameters arrive as scalars; whatever depends on the step count (Adam's and AdaMax's
bias corrections) is computed on the host, in float64, as the NumPy rules do. The scalars
that change from step to step (the learning rate, the bias corrections) are multiplied by
``dyn``, a small device array: ones for scalars given on the host (exact), or the values
themselves, with host scalars of 1, when a replayed CUDA graph (train/graph_step.py) fills
it before each launch -- the scalars of a captured launch are frozen at the capture.

Each kernel evaluates its rule in the order of the NumPy expressions of rules.py, with every
scalar rounded to the element type first (as NumPy rounds a Python float against a float32
array), so compiled for the CPU (tests, g++) it agrees with them to the last bit or nearly;
on a GPU NVRTC may contract a multiply and an add into one FMA, which differs by a rounding.
Weight decay, when set, is added to the gradient first, as Optimizer does.

The source is compiled with the layers' kernels, as one module (nn/kernels_cuda/compile.py):
valid C++ when run as one block of one thread, which is how tests/optim/test_fused_kernels.py
checks it without a GPU (nn/kernels_cuda/host.py).
"""
from __future__ import annotations

from ..backend import OPTIMIZER_KERNEL_FAMILY, Backend, current, is_device_array
from ..nn.kernels_cuda import compile
from ..nn.kernels_cuda.optimizer import DYNAMIC_SCALARS, SIGNATURES  # noqa: F401

# The kernel family that switches these kernels (``--kernels generic`` leaves it out).
FAMILY = OPTIMIZER_KERNEL_FAMILY      # named in backend.py, which checks --kernels


# Set by tests only: a factory (dtype -> launcher) running the kernels compiled for the CPU,
# so that whole models train through the fused update without a GPU.
host_launcher = None


def launcher_for(a, backend: Backend | None = None):
    """How to run the fused update on ``a``'s device, or None for the NumPy/CuPy expressions
    of rules.py: CuPy arrays take the kernels unless ``backend``'s kernel choice (None: the
    process default) leaves them out. Optimizer.fused_launcher asks only for rules with a
    kernel."""
    if not (backend or current()).kernels_enabled(FAMILY):
        return None
    if is_device_array(a):
        return compile.cupy_launcher(a.dtype)
    return host_launcher(a.dtype) if host_launcher is not None else None


def update(launch, kernel: str, scalars: tuple, w, g, slots: list, weight_decay: float,
           dyn) -> None:
    """One launch of ``kernel`` over flat, contiguous ``w``, ``g`` and ``slots``; ``dyn`` (on
    ``w``'s device, DYNAMIC_SCALARS long) scales the per-step scalars."""
    n = int(w.size)
    launch(kernel, n, w, g, *slots, n, weight_decay, *scalars, dyn)
