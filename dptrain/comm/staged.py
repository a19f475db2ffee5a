"""Host staging: collectives on GPU arrays through pinned host buffers, for an MPI that cannot
read device memory (the fallback when neither NCCL nor a CUDA-aware MPI is available).

Each operation copies the device buffer into a page-locked host buffer, runs the inner
communicator on it and copies the result back. Host (numpy) arrays pass straight through.
Buffers are pooled per size and dtype, so the hot path allocates nothing after the first
step; a buffer stays taken until its operation completes, so two reductions of the same
size in flight at once (two equal buckets) never share one.
"""
from __future__ import annotations

from .. import backend
from .base import Communicator, Handle


class _Staged(Handle):
    def __init__(self, inner: Handle, host, device, release):
        self._inner, self._host, self._device, self._release = inner, host, device, release
        self.done_at = None

    def test(self) -> bool:
        return self._inner.test()

    def wait(self) -> None:
        self._inner.wait()
        if self._device is not None:
            self._device.set(self._host)
            self._device = None
        for buf in self._release:
            buf()
        self._release = ()


class HostStagedCommunicator(Communicator):
    name = "staged"

    def __init__(self, inner: Communicator):
        self.inner = inner
        self.rank, self.size = inner.rank, inner.size
        self.local_rank, self.local_size = inner.local_rank, inner.local_size
        self._free: dict = {}         # (size, dtype) -> pinned buffers not in use

    def _take(self, arr):
        """A pinned buffer for ``arr`` that no pending operation uses, and how to give it back."""
        key = (arr.size, arr.dtype.str)
        free = self._free.setdefault(key, [])
        host = free.pop() if free else backend.pinned_empty(arr.size, arr.dtype)
        return host, lambda: free.append(host)

    def _host(self, arr, copy_in: bool = True):
        """(host array to communicate, device array to copy back into or None, release)."""
        if not backend.is_device_array(arr):
            return arr, None, lambda: None
        host, release = self._take(arr)
        if copy_in:
            arr.ravel().get(out=host)
        return host.reshape(arr.shape), arr, release

    def allreduce(self, buf) -> None:
        host, device, release = self._host(buf)
        self.inner.allreduce(host)
        if device is not None:
            device.set(host)
        release()

    def iallreduce(self, buf) -> Handle:
        host, device, release = self._host(buf)
        return _Staged(self.inner.iallreduce(host), host, device, (release,))

    def allgather(self, arr):
        host, device, release = self._host(arr)
        out = self.inner.allgather(host)
        release()
        return out if device is None else backend.get_array_module(arr).asarray(out)

    def iallgather(self, arr, out) -> Handle:
        host, _, release_in = self._host(arr)
        host_out, device_out, release_out = self._host(out, copy_in=False)
        return _Staged(self.inner.iallgather(host, host_out), host_out, device_out,
                       (release_in, release_out))

    def bcast(self, buf, root: int = 0) -> None:
        host, device, release = self._host(buf)
        self.inner.bcast(host, root)
        if device is not None:
            device.set(host)
        release()

    def barrier(self) -> None:
        self.inner.barrier()

    def allreduce_obj(self, obj):
        return self.inner.allreduce_obj(obj)

    def bcast_obj(self, obj, root: int = 0):
        return self.inner.bcast_obj(obj, root)

    def dup(self) -> "HostStagedCommunicator":
        return HostStagedCommunicator(self.inner.dup())

from .registry import Transport, default, register  # noqa: E402


def _over(inner=None, **kw) -> HostStagedCommunicator:
    return HostStagedCommunicator(inner or default())


register(Transport("staged", ("gpu",), "MPI fed through pinned host buffers (no NCCL, MPI not CUDA-aware)",
                   build=_over, over_mpi=lambda mpi_comm: _over(inner=mpi_comm)))
