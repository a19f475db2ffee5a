"""Communicator over mpi4py, with buffer methods (no pickling) on the hot path."""
from __future__ import annotations

import functools
import operator
import os
import pickle

import numpy as np

from .base import Communicator, Handle
from .topology import split_node


def _mpi():
    # The overlap schedule's communication thread issues MPI calls beside the main thread;
    # MPI_Init runs without the interpreter lock, so the start-up watchdog can end a wait
    # for a rank that never comes (dptrain/mpi_start.py).
    from ..mpi_start import initialize
    return initialize()


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
        node = split_node(MPI, self.comm)
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

    # The object collectives go over buffer ones: mpi4py runs those without the interpreter
    # lock, but holds it through its pickled ones, so no watchdog thread could end a wait there
    # for a rank that never comes (a frozen peer at the start-up agreement hung the job).
    def allreduce_obj(self, obj):
        """The sum (``+``, in rank order, as MPI.SUM on objects) of every rank's ``obj``."""
        mine = np.frombuffer(pickle.dumps(obj, pickle.HIGHEST_PROTOCOL), dtype=np.uint8)
        sizes = np.empty(self.size, dtype=np.int64)
        self.comm.Allgather(np.array([mine.size], dtype=np.int64), sizes)
        counts = [int(n) for n in sizes]
        data = np.empty(sum(counts), dtype=np.uint8)
        self.comm.Allgatherv(mine, [data, counts])
        ends = np.cumsum(counts)
        return functools.reduce(operator.add, (pickle.loads(data[e - n:e].tobytes())
                                               for n, e in zip(counts, ends)))

    def bcast_obj(self, obj, root: int = 0):
        data = pickle.dumps(obj, pickle.HIGHEST_PROTOCOL) if self.rank == root else b""
        size = np.array([len(data)], dtype=np.int64)
        self.comm.Bcast(size, root=root)
        buf = np.frombuffer(data, dtype=np.uint8).copy() if self.rank == root \
            else np.empty(int(size[0]), dtype=np.uint8)
        self.comm.Bcast(buf, root=root)
        return pickle.loads(buf.tobytes())

    def dup(self) -> "MPICommunicator":
        return MPICommunicator(self.comm.Dup())


# What the launcher tells a process before MPI starts, and ending the job, live in a module
# without heavy imports so the command line can use them from its first instruction.
from ..launch_env import abort_world, launch_rank, launched_under_mpi  # noqa: E402,F401

from .registry import Transport, register  # noqa: E402

register(Transport("mpi", ("cpu",), "any run under mpiexec/srun; a single process works too (size 1)",
                   build=lambda **kw: MPICommunicator(**kw), over_mpi=lambda mpi_comm: mpi_comm))
