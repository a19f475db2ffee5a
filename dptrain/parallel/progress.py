"""Two ways to make a bucket's Allreduce progress while backprop computes.

- ``thread``: one communication thread issuing blocking Allreduce per bucket on its own
  duplicated communicator (the design of Lee et al.'s code, MPI_THREAD_MULTIPLE);
- ``poll``: MPI_Iallreduce, progressed by testing between layers;
- ``priority``: a communication thread sending chunks in order of need (parallel/priority.py).

All return handles with ``wait()``, ``test()`` and ``done_at`` (perf_counter time the
reduction was seen complete), which the overlap statistics use.
"""
from __future__ import annotations

import queue
import threading
import time

from ..comm.base import Handle
from ..comm.order_check import current_origin, labelled
from .engine import ProgressEngine, register


class _Done(Handle):
    def __init__(self):
        self._event = threading.Event()
        self.error = None
        self.done_at = None

    def wait(self) -> None:
        self._event.wait()
        if self.error is not None:
            raise self.error

    def test(self) -> bool:
        return self._event.is_set()


def _in_origin(operation):
    """``operation`` run later (on a communication thread) under the origin named now."""
    origin = current_origin()

    def run():
        with labelled(origin):
            operation()
    return run


@register("thread")
class CommThread(ProgressEngine):
    """Reduces submitted buffers in submission order (so every rank's order matches)."""

    @classmethod
    def over(cls, comm, **options):
        return cls(comm.dup())

    def __init__(self, comm):
        self.comm = comm
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="dptrain-comm", daemon=True)
        self._thread.start()

    def submit(self, buf, priority: int = 0) -> Handle:
        done = _Done()
        self._queue.put((_in_origin(lambda: self.comm.allreduce(buf)), done))
        return done

    def submit_gather(self, send, recv, priority: int = 0) -> Handle:
        """Allgather ``send`` from every rank into ``recv`` (P, *send.shape), in order."""
        done = _Done()

        def gather():
            recv[...] = self.comm.allgather(send)
        self._queue.put((_in_origin(gather), done))
        return done

    def poll(self) -> None:
        """Nothing to do: the thread makes progress by itself."""

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            operation, done = item
            try:
                operation()
            except BaseException as exc:      # reported to the waiting main thread
                done.error = exc
            done.done_at = time.perf_counter()
            done._event.set()

    def close(self, wait: bool = True) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5 if wait else 0.5)


class _Polled(Handle):
    def __init__(self, request):
        self._request = request
        self.done_at = None

    def test(self) -> bool:
        if self.done_at is None and self._request.test():
            self.done_at = time.perf_counter()
        return self.done_at is not None

    def wait(self) -> None:
        if self.done_at is None:
            self._request.wait()
            self.done_at = time.perf_counter()


@register("poll")
class Poller(ProgressEngine):
    """MPI_Iallreduce per bucket; ``poll()`` tests the in-flight requests to drive progress."""

    def __init__(self, comm):
        self.comm = comm
        self._inflight: list[_Polled] = []

    def submit(self, buf, priority: int = 0) -> Handle:
        h = _Polled(self.comm.iallreduce(buf))
        self._inflight.append(h)
        return h

    def submit_gather(self, send, recv, priority: int = 0) -> Handle:
        h = _Polled(self.comm.iallgather(send, recv))
        self._inflight.append(h)
        return h

    def poll(self) -> None:
        self._inflight = [h for h in self._inflight if not h.test()]

    def close(self, wait: bool = True) -> None:
        """Complete what is in flight; after a failure (``wait=False``) drop it instead: a
        request another rank never matched would never complete, and the job ends anyway."""
        if wait:
            for h in self._inflight:
                h.wait()
        self._inflight = []
