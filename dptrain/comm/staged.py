"""Host staging: collectives on GPU arrays through pinned host buffers, for an MPI that cannot
read device memory (the fallback when neither NCCL nor a CUDA-aware MPI is available).

Each operation copies the device buffer into a page-locked host buffer (kept per size and
dtype, so the hot path allocates nothing), runs the inner communicator on it and copies the
result back. Host (numpy) arrays pass straight through.
"""
from __future__ import annotations

from .. import backend
from .base import Communicator, Handle


class _Staged(Handle):
    def __init__(self, inner: Handle, host, device):
        self._inner, self._host, self._device = inner, host, device
        self.done_at = None

    def test(self) -> bool:
        return self._inner.test()

    def wait(self) -> None:
        self._inner.wait()
        if self._device is not None:
            self._device.set(self._host)
            self._device = None


class HostStagedCommunicator(Communicator):
    name = "staged"

    def __init__(self, inner: Communicator):
        self.inner = inner
        self.rank, self.size = inner.rank, inner.size
        self.local_rank, self.local_size = inner.local_rank, inner.local_size
        self._buffers: dict = {}

    def _host(self, arr):
        """(host array to communicate, device array to copy back into, or None)."""
        if backend.get_array_module(arr).__name__ != "cupy":
            return arr, None
        key = (arr.size, arr.dtype.str)
        host = self._buffers.get(key)
        if host is None:
            host = self._buffers[key] = backend.pinned_empty(arr.size, arr.dtype)
        arr.ravel().get(out=host)
        return host.reshape(arr.shape), arr

    def allreduce(self, buf) -> None:
        host, device = self._host(buf)
        self.inner.allreduce(host)
        if device is not None:
            device.set(host)

    def iallreduce(self, buf) -> Handle:
        host, device = self._host(buf)
        return _Staged(self.inner.iallreduce(host), host, device)

    def allgather(self, arr):
        host, device = self._host(arr)
        out = self.inner.allgather(host)
        return out if device is None else backend.get_array_module(arr).asarray(out)

    def iallgather(self, arr, out) -> Handle:
        host, _ = self._host(arr)
        host_out, device_out = self._host(out)
        return _Staged(self.inner.iallgather(host, host_out), host_out, device_out)

    def bcast(self, buf, root: int = 0) -> None:
        host, device = self._host(buf)
        self.inner.bcast(host, root)
        if device is not None:
            device.set(host)

    def barrier(self) -> None:
        self.inner.barrier()

    def allreduce_obj(self, obj):
        return self.inner.allreduce_obj(obj)

    def bcast_obj(self, obj, root: int = 0):
        return self.inner.bcast_obj(obj, root)

    def dup(self) -> "HostStagedCommunicator":
        return HostStagedCommunicator(self.inner.dup())
