"""Communicator over mpi4py, with buffer methods (no pickling) on the hot path."""
from __future__ import annotations

import os

import numpy as np

from .base import Communicator, Handle


def _mpi():
    import mpi4py
    # The overlap schedule's communication thread issues MPI calls beside the main thread.
    mpi4py.rc.thread_level = "multiple"
    from mpi4py import MPI
    return MPI


class _Request(Handle):
    def __init__(self, req):
        self._req = req

    def wait(self) -> None:
        self._req.Wait()

    def test(self) -> bool:
        return bool(self._req.Test())


class MPICommunicator(Communicator):
    name = "mpi"

    def __init__(self, mpi_comm=None):
        MPI = _mpi()
        self.MPI = MPI
        self.comm = mpi_comm if mpi_comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        self.local_rank, self.local_size = node.Get_rank(), node.Get_size()
        node.Free()

    @property
    def thread_multiple(self) -> bool:
        return self.MPI.Query_thread() == self.MPI.THREAD_MULTIPLE

    def allreduce(self, buf) -> None:
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)

    def iallreduce(self, buf) -> Handle:
        return _Request(self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM))

    def allgather(self, arr):
        arr = np.ascontiguousarray(arr)
        out = np.empty((self.size,) + arr.shape, dtype=arr.dtype)
        self.comm.Allgather(arr, out)
        return out

    def iallgather(self, arr, out) -> Handle:
        return _Request(self.comm.Iallgather(np.ascontiguousarray(arr), out))

    def bcast(self, buf, root: int = 0) -> None:
        if self.size > 1:
            self.comm.Bcast(buf, root=root)

    def barrier(self) -> None:
        self.comm.Barrier()

    def allreduce_obj(self, obj):
        return self.comm.allreduce(obj)

    def bcast_obj(self, obj, root: int = 0):
        return self.comm.bcast(obj, root=root)

    def dup(self) -> "MPICommunicator":
        return MPICommunicator(self.comm.Dup())


# What the launcher tells a process before MPI starts, and ending the job, live in a module
# without heavy imports so the command line can use them from its first instruction.
from ..launch_env import abort_world, launch_rank, launched_under_mpi  # noqa: E402,F401
