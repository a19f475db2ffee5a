"""NCCL for device buffers, MPI for the rest (one rank per GPU; multi-GPU runs not yet verified).

The NCCL unique id is created on rank 0 and broadcast over MPI. Reductions run on a
dedicated CUDA stream; each is ordered after the kernels that produced the gradients by
an event recorded on the computing stream (no host synchronisation per layer), and a
handle's ``wait()`` makes the computing stream wait for the reduction's event, so the next
forward pass cannot read a gradient before it is reduced. Host arrays and Python objects go
through the wrapped MPI communicator.
"""
from __future__ import annotations

import time

from .. import backend
from .base import Communicator, Handle


def _ptr(arr) -> int:
    """The device address of a CuPy array (what NCCL's calls take)."""
    return arr.data.ptr


class _Event(Handle):
    def __init__(self, event, consumer):
        self._event, self._consumer = event, consumer     # the stream that reads the result
        self.done_at = None

    def test(self) -> bool:
        if self.done_at is None and self._event.done:
            self.done_at = time.perf_counter()
        return self.done_at is not None

    def wait(self) -> None:
        """The computing stream waits for the reduction on the device; the host does not.
        ``done_at`` is then when the host learnt of it, an upper bound for the statistics."""
        self._consumer.wait_event(self._event)
        if self.done_at is None:
            self.done_at = time.perf_counter()


class NCCLCommunicator(Communicator):
    name = "nccl"

    def __init__(self, mpi: Communicator):
        cupy = backend.cupy_module()
        self.nccl = backend.cupy_nccl()
        self.mpi = mpi
        self.rank, self.size = mpi.rank, mpi.size
        self.local_rank, self.local_size = mpi.local_rank, mpi.local_size
        uid = mpi.bcast_obj(self.nccl.get_unique_id() if mpi.rank == 0 else None, root=0)
        self.comm = self.nccl.NcclCommunicator(self.size, uid, self.rank)
        # Captured here, on the training thread: CuPy's current device and stream are
        # per thread, and a communication thread must order itself after *this* stream.
        self.device = cupy.cuda.Device()
        self.compute_stream = cupy.cuda.get_current_stream()
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._types = {"float16": self.nccl.NCCL_FLOAT16, "float32": self.nccl.NCCL_FLOAT32,
                       "float64": self.nccl.NCCL_FLOAT64, "int64": self.nccl.NCCL_INT64,
                       "int32": self.nccl.NCCL_INT32}

    @staticmethod
    def _on_device(arr) -> bool:
        return backend.get_array_module(arr).__name__ == "cupy"

    def _after_compute(self):
        """Order the communication stream after everything queued on the computing stream."""
        cupy = backend.cupy_module()
        self.device.use()                       # a no-op on the training thread
        ready = cupy.cuda.Event(disable_timing=True)
        ready.record(self.compute_stream)
        self.stream.wait_event(ready)

    def _finished(self) -> Handle:
        """A handle on what is queued on the communication stream, read by the training stream."""
        cupy = backend.cupy_module()
        done = cupy.cuda.Event(disable_timing=True)
        done.record(self.stream)
        return _Event(done, self.compute_stream)

    def iallreduce(self, buf) -> Handle:
        if not self._on_device(buf):
            return self.mpi.iallreduce(buf)
        self._after_compute()
        self.comm.allReduce(_ptr(buf), _ptr(buf), buf.size, self._types[buf.dtype.name],
                            self.nccl.NCCL_SUM, self.stream.ptr)
        return self._finished()

    def allreduce(self, buf) -> None:
        self.iallreduce(buf).wait()

    def iallgather(self, arr, out) -> Handle:
        if not self._on_device(arr):
            return self.mpi.iallgather(arr, out)
        self._after_compute()
        self.comm.allGather(_ptr(arr), _ptr(out), arr.size, self._types[arr.dtype.name],
                            self.stream.ptr)
        return self._finished()

    def allgather(self, arr):
        if not self._on_device(arr):
            return self.mpi.allgather(arr)
        out = backend.cupy_module().empty((self.size,) + arr.shape, dtype=arr.dtype)
        self.iallgather(backend.cupy_module().ascontiguousarray(arr), out).wait()
        return out

    def bcast(self, buf, root: int = 0) -> None:
        if not self._on_device(buf):
            self.mpi.bcast(buf, root)
            return
        self._after_compute()
        self.comm.bcast(_ptr(buf), buf.size, self._types[buf.dtype.name], root, self.stream.ptr)
        self._finished().wait()

    def barrier(self) -> None:
        self.mpi.barrier()

    def allreduce_obj(self, obj):
        return self.mpi.allreduce_obj(obj)

    def bcast_obj(self, obj, root: int = 0):
        return self.mpi.bcast_obj(obj, root)

    def dup(self) -> "NCCLCommunicator":
        return NCCLCommunicator(self.mpi.dup())


def available() -> bool:
    """Whether CuPy's NCCL bindings load here. ``cupy.cuda.nccl`` is a submodule that CuPy
    does not import by itself: reading it as an attribute fails until something imports it."""
    try:
        return bool(backend.cupy_nccl().available)
    except Exception:       # no CuPy, CuPy built without NCCL, or libnccl missing
        return False

from .registry import Transport, default, register  # noqa: E402


def _over(inner=None, **kw) -> NCCLCommunicator:
    return NCCLCommunicator(inner or default())


register(Transport("nccl", ("gpu",), "NCCL on a dedicated CUDA stream for device buffers, MPI for the rest",
                   build=_over, over_mpi=lambda mpi_comm: _over(inner=mpi_comm)))
