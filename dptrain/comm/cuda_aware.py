"""CUDA-aware MPI: detecting it, and a communicator that hands device buffers to MPI.

Detection asks the MPI library itself where it can (``MPIX_Query_cuda_support()`` in Open
MPI and MPICH, ``MPIX_GPU_query_support(CUDA, &flag)`` in MPICH 4+), then the switches of
MPIs that have no query (Cray MPICH's MPICH_GPU_SUPPORT_ENABLED, MVAPICH2-GDR's
MV2_USE_CUDA). DPTRAIN_CUDA_AWARE_MPI=1 or 0 overrides all of it, for a library that
answers wrongly.

MPI knows nothing of CUDA streams, so before a device buffer is handed over the kernels
that write it must have finished: each operation waits for an event recorded on the
computing stream behind them (a host wait per bucket, which NCCL avoids: that is why
``auto`` prefers NCCL).
"""
from __future__ import annotations

import ctypes
import os

from .. import backend
from .mpi import MPICommunicator, _Request

MPIX_GPU_SUPPORT_CUDA = 0           # the gpu_type argument of MPIX_GPU_query_support (mpi.h)


def _mpi_library():
    """A handle through which the symbols of the MPI library mpi4py loaded can be found."""
    from mpi4py import MPI
    return ctypes.CDLL(MPI.__file__)


def detect(env=None, library=None) -> tuple[bool, str]:
    """(whether MPI accepts device buffers, how that was decided)."""
    env = os.environ if env is None else env
    forced = env.get("DPTRAIN_CUDA_AWARE_MPI")
    if forced in ("0", "1"):
        return forced == "1", f"DPTRAIN_CUDA_AWARE_MPI={forced}"
    try:
        lib = _mpi_library() if library is None else library
    except Exception as exc:                   # no MPI at all: not CUDA-aware
        return False, f"no MPI library ({exc})"
    query = getattr(lib, "MPIX_Query_cuda_support", None)
    if query is not None:
        query.restype = ctypes.c_int
        return bool(query()), "MPIX_Query_cuda_support()"
    query = getattr(lib, "MPIX_GPU_query_support", None)
    if query is not None:
        flag = ctypes.c_int(0)
        query.restype = ctypes.c_int
        ok = query(MPIX_GPU_SUPPORT_CUDA, ctypes.byref(flag)) == 0
        return ok and bool(flag.value), "MPIX_GPU_query_support(CUDA)"
    for var in ("MPICH_GPU_SUPPORT_ENABLED", "MV2_USE_CUDA"):
        if var in env:
            return env[var] == "1", f"{var}={env[var]}"
    return False, "the MPI library has no CUDA-support query"


class CudaAwareMPICommunicator(MPICommunicator):
    """MPI on device buffers directly (mpi4py reads CuPy arrays through the CUDA array
    interface); host arrays behave as with the plain MPI communicator."""
    name = "cuda-mpi"

    def __init__(self, mpi_comm=None):
        super().__init__(mpi_comm)
        self._device = self._stream = None
        if not backend.host_reads_are_free():
            # captured on the training thread: a communication thread has its own current
            # device and stream in CuPy, and must wait for the training stream's kernels
            cupy = backend.cupy_module()
            self._device, self._stream = cupy.cuda.Device(), cupy.cuda.get_current_stream()

    def _ready(self, *arrays) -> None:
        if any(backend.get_array_module(a).__name__ == "cupy" for a in arrays):
            cupy = backend.cupy_module()
            if self._device is not None:
                self._device.use()
            done = cupy.cuda.Event(disable_timing=True)
            done.record(self._stream or cupy.cuda.get_current_stream())
            done.synchronize()

    def allreduce(self, buf) -> None:
        self._ready(buf)
        super().allreduce(buf)

    def iallreduce(self, buf):
        self._ready(buf)
        return super().iallreduce(buf)

    def allgather(self, arr):
        xp = backend.get_array_module(arr)
        if xp.__name__ != "cupy":
            return super().allgather(arr)
        arr = xp.ascontiguousarray(arr)
        out = xp.empty((self.size,) + arr.shape, dtype=arr.dtype)
        self._ready(arr)
        self.comm.Allgather(arr, out)
        return out

    def iallgather(self, arr, out):
        xp = backend.get_array_module(arr)
        arr = xp.ascontiguousarray(arr)
        self._ready(arr, out)
        return _Request(self.comm.Iallgather(arr, out))

    def bcast(self, buf, root: int = 0) -> None:
        self._ready(buf)
        super().bcast(buf, root)

    def dup(self) -> "CudaAwareMPICommunicator":
        return CudaAwareMPICommunicator(self.comm.Dup())

from .registry import Transport, register  # noqa: E402

register(Transport("cuda-mpi", ("gpu",), "MPI handed device buffers directly, when it is CUDA-aware",
                   build=lambda **kw: CudaAwareMPICommunicator(**kw),
                   over_mpi=lambda mpi_comm: CudaAwareMPICommunicator(mpi_comm=mpi_comm.comm)))
