"""``priority``: a communication thread that sends what the next forward pass needs first.

Every submitted buffer (an *item*) is cut into chunks of at most ``chunk_bytes``; whenever the
link is free the thread sends the next chunk of the most urgent item (the lowest layer index:
the next forward pass needs the first layers first; ties in posting order), so a large bucket
posted early no longer holds up a small one that is needed sooner (ByteScheduler, P3).

MPI needs every rank to post the same collectives in the same order, so the thread chooses
only among items that every rank has submitted, and that count is agreed without collectives
of its own: each chunk carries AGREE_SLOTS extra elements, a thermometer code of how many
items this rank has submitted beyond the agreed count (slot j is 1 when more than j). The
chunk is summed over the ranks, so slot j sums to P exactly when every rank has more than j,
and the number of leading slots at P is how many more items every rank has: the same number
on every rank. Only when no agreed item has chunks left does the thread post an agreement of
its own (an allreduce of each rank's count), and only once it has an item to offer, so every
such agreement makes progress. A late rank delays the agreement, never changes the order:
what a rank posts depends only on sums that every rank receives alike.

Gathers (overlap-fc) travel whole, without slots, and so does a dtype that cannot count to P
exactly (float16 beyond 2048 ranks). The planner (parallel/planner.py) chooses the chunk size
from the link's alpha and beta; the simulator (parallel/link_model.py) replays this engine.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from ..backend import get_array_module, to_numpy
from ..comm.order_check import current_origin, labelled
from .engine import ProgressEngine, register
from .progress import _Done

AGREE_SLOTS = 8            # items that one chunk can agree on
DEFAULT_CHUNK = 64 << 10


class _Item:
    """One submitted buffer: its chunks still to send, and the handle its waiters hold."""

    def __init__(self, priority: int, seq: int, chunks: list, run):
        self.priority, self.seq, self.chunks, self.run = priority, seq, chunks, run
        self.left = len(chunks)
        self.done = _Done()


def _counts_exactly(dtype, size: int) -> bool:
    """``dtype`` sums P ones exactly (the agreement slots ride in the chunk's own dtype)."""
    dtype = np.dtype(dtype)
    return dtype.kind == "f" and size <= 2 ** (np.finfo(dtype).nmant + 1)


@register("priority")
class PriorityCommThread(ProgressEngine):
    """Chunks in order of need, agreed inside the chunks themselves (module docstring)."""

    chunked = True

    @classmethod
    def over(cls, comm, chunk_bytes: int | None = None):
        return cls(comm.dup(), chunk_bytes or DEFAULT_CHUNK)

    def __init__(self, comm, chunk_bytes: int = DEFAULT_CHUNK):
        self.comm, self.chunk_bytes = comm, int(chunk_bytes)
        self._cv = threading.Condition()
        self._items: list[_Item] = []       # submitted, chunks left to send, in posting order
        self._posted = 0                    # items submitted on this rank
        self._agreed = 0                    # items submitted on every rank (alike everywhere)
        self._closing = False
        self.agreements = 0                 # separate agreement collectives posted (tests)
        self._thread = threading.Thread(target=self._run, name="dptrain-comm", daemon=True)
        self._thread.start()

    def _enqueue(self, chunks: list, priority: int, run) -> _Item:
        with self._cv:
            item = _Item(priority, self._posted, chunks, run)
            self._items.append(item)
            self._posted += 1
            self._cv.notify()
        return item

    def submit(self, buf, priority: int = 0):
        step = max(self.chunk_bytes // buf.itemsize, 1)
        views = [buf[i:i + step] for i in range(0, len(buf), step)]
        slots, origin = _counts_exactly(buf.dtype, self.comm.size), current_origin()

        def reduce(view, offered: int) -> int:
            with labelled(origin):
                return self.send_chunk(view, offered, slots)
        return self._enqueue(views, priority, reduce).done

    def submit_gather(self, send, recv, priority: int = 0):
        origin = current_origin()

        def gather(_view, _offered: int) -> int:
            with labelled(origin):
                recv[...] = self.comm.allgather(send)
            return 0
        return self._enqueue([None], priority, gather).done

    def poll(self) -> None:
        """Nothing to do: the thread makes progress by itself."""

    # --- the thread -------------------------------------------------------------------
    def _most_urgent(self) -> _Item | None:
        ready = [it for it in self._items if it.seq < self._agreed]
        return min(ready, key=lambda it: (it.priority, it.seq)) if ready else None

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._closing and self._posted == self._agreed \
                        and self._most_urgent() is None:
                    self._cv.wait()
                item = self._most_urgent()
                offered = self._posted - self._agreed
                if item is None and offered == 0:
                    return                                  # closing, nothing left
                chunk = item.chunks.pop(0) if item is not None else None
                if item is not None and not item.chunks:
                    self._items.remove(item)
            try:
                gained = item.run(chunk, offered) if item is not None else self._agree(offered)
            except BaseException as exc:                    # reported to every waiter
                self._fail(item, exc)
                return
            with self._cv:
                self._agreed += gained
            if item is not None:
                item.left -= 1
                if item.left == 0:
                    item.done.done_at = time.perf_counter()
                    item.done._event.set()

    def _agree(self, offered: int) -> int:
        """A separate agreement: every rank's count of items beyond the agreed one."""
        counts = np.zeros(self.comm.size, dtype=np.int64)
        counts[self.comm.rank] = offered
        with labelled("posted-item counts (priority progress)"):
            self.comm.allreduce(counts)
        self.agreements += 1
        return int(counts.min())

    def send_chunk(self, view, offered: int, slots: bool) -> int:
        """Allreduce one chunk, with the agreement slots when ``slots``; the items gained."""
        if not slots:
            self.comm.allreduce(view)
            return 0
        xp, n = get_array_module(view), len(view)
        stage = xp.empty(n + AGREE_SLOTS, dtype=view.dtype)
        stage[:n] = view
        stage[n:] = xp.asarray(np.arange(AGREE_SLOTS) < offered, dtype=view.dtype)
        self.comm.allreduce(stage)
        view[...] = stage[:n]
        full = to_numpy(stage[n:]) > self.comm.size - 0.5   # every rank has more than j
        return AGREE_SLOTS if full.all() else int(np.argmin(full))

    def _fail(self, item, exc) -> None:
        with self._cv:
            waiting = [it for it in self._items if it is not item] + ([item] if item else [])
            self._items = []
        for it in waiting:
            it.done.error = exc
            it.done.done_at = time.perf_counter()
            it.done._event.set()

    def close(self, wait: bool = True) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout=5 if wait else 0.5)
