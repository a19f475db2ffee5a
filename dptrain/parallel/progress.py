"""Two ways to make a bucket's Allreduce progress while backprop computes.

- ``thread``: one communication thread issuing blocking Allreduce per bucket on its own
  duplicated communicator (the design of Lee et al.'s code, MPI_THREAD_MULTIPLE);
- ``poll``: MPI_Iallreduce, progressed by testing between layers;
- ``priority``: a communication thread sending chunks in order of need (PriorityCommThread).

Both return handles with ``wait()``, ``test()`` and ``done_at`` (perf_counter time the
reduction was seen complete), which the overlap statistics use.
"""
from __future__ import annotations

import queue
import threading
import time

import numpy as np

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
    def over(cls, comm):
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


@register("priority")
class PriorityCommThread(ProgressEngine):
    """A communication thread that sends what the next forward pass needs first.

    Buckets are cut into chunks of at most ``chunk_bytes``; whenever the channel is free the
    most urgent chunk goes next (lowest layer index: the next forward pass needs the first
    layers first), so a large bucket posted early no longer holds up a small one that is
    needed sooner. MPI needs every rank to issue the same collectives in the same order, so
    the choice is made from information all ranks share: before each chunk the threads
    all-reduce how many chunks each rank has posted, and choose only among chunks that every
    rank has posted (ties broken by posting order).
    """

    @classmethod
    def over(cls, comm):
        return cls(comm.dup())

    def __init__(self, comm, chunk_bytes: int = 64 << 10):
        self.comm, self.chunk_bytes = comm, int(chunk_bytes)
        self._cv = threading.Condition()
        self._pending = []          # (priority, seq, operation, group)
        self._posted = 0
        self._closing = False
        self._counts = np.zeros(comm.size, dtype=np.int64)
        self._thread = threading.Thread(target=self._run, name="dptrain-comm", daemon=True)
        self._thread.start()

    def _enqueue(self, items, priority: int) -> Handle:
        done = _Done()
        group = {"left": len(items), "done": done}
        with self._cv:
            for op in items:
                self._pending.append((priority, self._posted, op, group))
                self._posted += 1
            self._cv.notify()
        return done

    def submit(self, buf, priority: int = 0) -> Handle:
        step = max(self.chunk_bytes // buf.itemsize, 1)
        views = [buf[i:i + step] for i in range(0, len(buf), step)]
        return self._enqueue([_in_origin(lambda v=v: self.comm.allreduce(v)) for v in views],
                             priority)

    def submit_gather(self, send, recv, priority: int = 0) -> Handle:
        def gather():
            recv[...] = self.comm.allgather(send)
        return self._enqueue([_in_origin(gather)], priority)

    def poll(self) -> None:
        """Nothing to do: the thread makes progress by itself."""

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._pending and not self._closing:
                    self._cv.wait()
                if not self._pending:
                    return
                posted = self._posted
            self._counts[:] = 0
            self._counts[self.comm.rank] = posted
            try:
                with labelled("posted-chunk counts (priority progress)"):
                    self.comm.allreduce(self._counts)   # every rank's posted count
                agreed = int(self._counts.min())
                with self._cv:
                    ready = [item for item in self._pending if item[1] < agreed]
                    item = min(ready, key=lambda it: (it[0], it[1]))
                    self._pending.remove(item)
                _, _, operation, group = item
                operation()
                error = None
            except BaseException as exc:              # reported to the waiting main thread
                error = exc
            group["left"] -= 1
            if group["left"] == 0 or error is not None:
                group["done"].error = error
                group["done"].done_at = time.perf_counter()
                group["done"]._event.set()
            if error is not None:
                return

    def close(self, wait: bool = True) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout=5 if wait else 0.5)
