"""The one place that chooses the array module and the floating-point dtype.

Layer code is written once against ``xp`` (numpy or cupy). Only this module
imports cupy, and only when a GPU is asked for. ``get_array_module(a)``
returns the module an existing array belongs to, the way Chainer does.

A ``Backend`` names the array module, dtype, kernel choice and device a model computes with;
the model holds one (``model.backend``) and its layers and optimiser read theirs from it.
The process default (``current()``), which the command sets from --device, --dtype and
--kernels (``use_device``, ``set_dtype``, ``set_kernels``), is what a model built without one
takes: a test passes ``Backend(numpy, numpy.float64)`` instead of changing the default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

_DTYPES = {"float32": np.float32, "float64": np.float64}

xp = np                 # the array module in use
# Which hand-written kernels run: auto (those that beat the generic array code, below), all,
# generic (none: array code only), or a comma list of families: the CUDA kernels'
# (nn/kernels_cuda/: im2col, col2im, maxpool, batchnorm, bn_relu_pool, optimizer) and the
# compiled CPU kernels' (dptrain/native/: cpu_batchnorm, cpu_conv, cpu_winograd)
kernels = os.environ.get("DPTRAIN_KERNELS", "auto")
dtype = np.float32      # default floating dtype for parameters and activations
device_name = "cpu"


class DeviceError(RuntimeError):
    """The requested device cannot be used (no GPU, no CuPy, too many ranks per GPU)."""


def set_dtype(name: str) -> None:
    global dtype
    if name not in _DTYPES:
        raise ValueError(f"unknown dtype {name!r} (choose float32 or float64)")
    dtype = _DTYPES[name]


# The hand-written kernel families (nn/cuda_kernels.py, optim/fused.py), named here so that
# --kernels is checked without importing the layers: nothing here imports from above.
LAYER_KERNEL_FAMILIES = ("im2col", "col2im", "maxpool", "batchnorm", "bn_relu_pool")
OPTIMIZER_KERNEL_FAMILY = "optimizer"
# The compiled CPU kernels (dptrain/native/, built by make), which run on NumPy float32 arrays.
CPU_KERNEL_FAMILIES = ("cpu_batchnorm", "cpu_conv", "cpu_winograd")


def check_kernels(mode: str) -> str:
    """``mode`` when it is a kernel choice (--kernels), else ValueError naming the choices."""
    families = LAYER_KERNEL_FAMILIES + (OPTIMIZER_KERNEL_FAMILY,) + CPU_KERNEL_FAMILIES
    named = mode not in ("auto", "all", "generic")
    unknown = [f for f in mode.split(",") if f not in families] if named else []
    if unknown or not mode:
        raise ValueError(f"unknown kernel choice {mode!r} (choose auto, all, generic or a comma "
                         f"list of {', '.join(families)})")
    return mode


def set_kernels(mode: str) -> None:
    global kernels
    kernels = check_kernels(mode)


# Left out of `auto`: the families that lost to the generic array code where last measured
# on a GPU (dptrain bench --kernel-ops --device gpu --batch-size 256, H100, 2026-11-26:
# the im2col kernel 2.0 ms against 1.9 ms for the padded copy and strided view, both models).
NOT_IN_AUTO = ("im2col",)


def _enabled(mode: str, family: str) -> bool:
    if mode == "auto":
        return family not in NOT_IN_AUTO
    return mode == "all" or (mode != "generic" and family in mode.split(","))


@dataclass(frozen=True)
class Backend:
    """What a model computes with: array module (numpy or cupy), floating dtype of its
    parameters, which hand-written kernels it uses (a --kernels choice, see check_kernels)
    and the device's name."""
    xp: object = np
    dtype: type = np.float32
    kernels: str = "auto"
    device_name: str = "cpu"

    def kernels_enabled(self, family: str) -> bool:
        """Whether this backend runs ``family``'s hand-written kernels (where it has some)."""
        return _enabled(self.kernels, family)

    def asarray(self, value):
        """``value`` as a new parameter: an array of this backend's module and dtype."""
        return self.xp.asarray(value, dtype=self.dtype)

    def zeros(self, shape):
        return self.xp.zeros(shape, dtype=self.dtype)

    def ones(self, shape):
        return self.xp.ones(shape, dtype=self.dtype)


def current() -> Backend:
    """The process default: the module, dtype, kernels and device set_dtype, set_kernels and
    use_device chose (float32 on the CPU until then)."""
    return Backend(xp, dtype, kernels, device_name)


def kernels_enabled(family: str) -> bool:
    return _enabled(kernels, family)


def gpu_available() -> bool:
    try:
        import cupy  # noqa: F401  (only backend.py imports cupy)
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


def use_device(kind: str, local_rank: int = 0, local_size: int = 1,
               allow_sharing: bool = False) -> str:
    """Select numpy ('cpu') or cupy ('gpu'); 'auto' takes a GPU when one exists.

    On a GPU, the node-local rank picks the device among those visible
    (CUDA_VISIBLE_DEVICES is respected by the CUDA runtime itself).
    """
    global xp, device_name
    if kind not in ("cpu", "gpu", "auto"):
        raise ValueError(f"unknown device {kind!r} (choose cpu, gpu or auto)")
    if kind == "cpu" or (kind == "auto" and not gpu_available()):
        xp, device_name = np, "cpu"
        return device_name
    if not gpu_available():
        raise DeviceError("--device gpu: no usable GPU (CuPy missing or no CUDA device)")
    import cupy
    count = cupy.cuda.runtime.getDeviceCount()
    if local_size > count and not allow_sharing:
        raise DeviceError(f"{local_size} ranks on this node but {count} visible GPU(s); "
                          "pass --allow-gpu-sharing to share them")
    cupy.cuda.Device(local_rank % count).use()
    xp, device_name = cupy, f"gpu:{local_rank % count}"
    return device_name


def cupy_module():
    """cupy itself (for the NCCL bindings and CUDA streams), imported here only."""
    import cupy
    return cupy


def cupy_nccl():
    """CuPy's NCCL bindings (``cupy.cuda.nccl``), which ``import cupy`` does not load: the
    submodule must be imported by name before it exists as an attribute."""
    import importlib
    return importlib.import_module("cupy.cuda.nccl")


def device_identity() -> str:
    """Which physical device this rank computes on, told apart across the job: the host
    name and the GPU's PCI bus id ('cpu' on the CPU). Two ranks with one identity share a
    GPU, which NCCL refuses."""
    if xp is np:
        return "cpu"
    import socket
    import cupy
    device = cupy.cuda.Device()
    try:
        bus = device.pci_bus_id
    except Exception:                # an older CuPy: the index among the visible devices
        bus = f"device {device.id}"
    return f"{socket.gethostname()}:{bus}"


def is_device_array(a) -> bool:
    """Whether ``a`` lives on a GPU (a CuPy array), told without importing CuPy."""
    return type(a).__module__.startswith("cupy")


def get_array_module(a):
    """numpy or cupy, whichever owns ``a``."""
    if type(a).__module__.startswith("cupy"):
        import cupy
        return cupy
    return np


def synchronize() -> None:
    """Wait for the device's queued work (timing only; a no-op on the CPU)."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()


def to_numpy(a) -> np.ndarray:
    """Copy to host when needed (checkpoints, metrics, tests)."""
    if type(a).__module__.startswith("cupy"):
        return a.get()
    return np.asarray(a)


def pinned_empty(n: int, dtype):
    """A 1-D host array for staging device data: page-locked when CuPy is in use, so that
    copies to and from the GPU run at full speed and can be asynchronous."""
    if xp is np:
        return np.empty(n, dtype=dtype)
    import cupy
    itemsize = np.dtype(dtype).itemsize
    mem = cupy.cuda.alloc_pinned_memory(max(n * itemsize, 1))
    return np.frombuffer(mem, dtype=dtype, count=n)


def set_threads(n: int | None) -> None:
    """Limit BLAS/OpenMP threads in this process (one rank = one core by default under MPI);
    every CPU run sets up here, so the allocator keeps freed memory too (allocator.py)."""
    from .allocator import keep_freed_memory
    keep_freed_memory()
    if not n:
        return
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(n)


class HostCopy:
    """The values of a (small) array on the host, read later without draining the device.

    For a CuPy array the copy into page-locked memory is queued now, behind the work already
    on the current stream, and an event marks its end; ``value()`` waits for that event only,
    so a host that reads step k's numbers while step k+1 is queued does not wait for step
    k+1. For a NumPy array the copy is immediate. This is how a training step avoids a host
    round trip: its loss, accuracy and gradient checks are read one step late.
    """

    def __init__(self, a):
        self._event = None
        if type(a).__module__.startswith("cupy"):
            import cupy
            stream = cupy.cuda.get_current_stream()
            self._host = pinned_empty(a.size, a.dtype).reshape(a.shape)
            a.get(stream=stream, out=self._host, blocking=False)
            self._event = cupy.cuda.Event(disable_timing=True)
            self._event.record(stream)
        else:
            self._host = np.array(a)

    @property
    def ready(self) -> bool:
        return self._event is None or self._event.done

    def value(self) -> np.ndarray:
        if self._event is not None:
            self._event.synchronize()
            self._event = None
        return self._host


def host_reads_are_free() -> bool:
    """Whether reading a result on the host costs nothing (NumPy), or waits for a device."""
    return xp is np


def stack_scalars(values, dtype=np.float64):
    """One 1-D array of scalars that may live on the device (0-d CuPy arrays) or the host:
    on the device when any of them does, so that nothing is copied to the host here."""
    if any(type(v).__module__.startswith("cupy") for v in values):
        import cupy
        return cupy.stack([cupy.asarray(v, dtype=dtype) for v in values])
    return np.array([float(v) for v in values], dtype=dtype)
