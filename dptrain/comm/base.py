"""The communicator interface. Names mirror MPI; every implementation has these signatures.

    c.rank, c.size, c.local_rank, c.local_size
    c.allreduce(buf)            in-place sum over ranks of a contiguous array (blocking)
    c.iallreduce(buf) -> h      the same, non-blocking; h.wait() completes, h.test() polls
    c.allgather(arr) -> out     (size, *arr.shape), rank r's array at out[r]
    c.iallgather(arr, out) -> h the same into ``out``, non-blocking
    c.bcast(buf, root=0)        in place
    c.barrier()
    c.allreduce_obj(x), c.bcast_obj(x, root)   small Python objects (pickled; not the hot path)
    c.dup() -> Communicator     a separate channel, e.g. for a communication thread

Collectives on one communicator must be issued in the same order on every rank.
Both classes are abstract: a transport that leaves an operation out fails at construction
with a TypeError naming it, not in the middle of a run.
"""
from __future__ import annotations

from abc import ABC, abstractmethod


class Handle(ABC):
    """A pending non-blocking operation."""

    @abstractmethod
    def wait(self) -> None:
        raise NotImplementedError

    @abstractmethod
    def test(self) -> bool:
        raise NotImplementedError


class Communicator(ABC):
    rank = 0
    size = 1
    local_rank = 0
    local_size = 1
    name = "base"

    @abstractmethod
    def allreduce(self, buf) -> None:
        raise NotImplementedError

    @abstractmethod
    def iallreduce(self, buf) -> Handle:
        raise NotImplementedError

    @abstractmethod
    def allgather(self, arr):
        raise NotImplementedError

    @abstractmethod
    def iallgather(self, arr, out) -> Handle:
        raise NotImplementedError

    @abstractmethod
    def bcast(self, buf, root: int = 0) -> None:
        raise NotImplementedError

    @abstractmethod
    def barrier(self) -> None:
        raise NotImplementedError

    @abstractmethod
    def allreduce_obj(self, obj):
        raise NotImplementedError

    @abstractmethod
    def bcast_obj(self, obj, root: int = 0):
        raise NotImplementedError

    @abstractmethod
    def dup(self) -> "Communicator":
        raise NotImplementedError
