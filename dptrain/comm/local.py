"""A communicator of one process: what a run without an MPI launcher uses."""
from __future__ import annotations

from .base import Communicator, Handle


class _Complete(Handle):
    def wait(self) -> None:
        pass

    def test(self) -> bool:
        return True


class LocalCommunicator(Communicator):
    name = "local"

    def allreduce(self, buf) -> None:
        pass

    def iallreduce(self, buf) -> Handle:
        return _Complete()

    def allgather(self, arr):
        return arr[None].copy()                 # a host or device array alike

    def iallgather(self, arr, out) -> Handle:
        out[0] = arr
        return _Complete()

    def bcast(self, buf, root: int = 0) -> None:
        pass

    def barrier(self) -> None:
        pass

    def allreduce_obj(self, obj):
        return obj

    def bcast_obj(self, obj, root: int = 0):
        return obj

    def dup(self) -> "LocalCommunicator":
        return LocalCommunicator()

from .registry import Transport, register  # noqa: E402

register(Transport("local", ("cpu",), "one process, no MPI at all (dptrain train without a launcher)",
                   build=lambda **kw: LocalCommunicator()))
