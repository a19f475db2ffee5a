"""``priority``: a communication thread that sends what the next forward pass needs first.

Every submitted buffer (an *item*) is cut into chunks of at most ``chunk_bytes``; whenever the
thread may post, it posts the next chunk of the most urgent item (the lowest layer index: the
next forward pass needs the first layers first; ties in posting order), so a large bucket
posted early no longer holds up a small one that is needed sooner (ByteScheduler, P3).

Chunks are non-blocking Allreduces, DEPTH of them in flight, so one queues on the link while
the thread waits to post the next (it needs the interpreter, which the main thread holds
through long NumPy calls). The thread tests its oldest request and sleeps POLL_S between
tests rather than waiting inside MPI: MPICH's wait spins, and on a rank with one core for
backprop and this thread, a 5 ms chunk took 30-50 ms beside a busy main thread (8 ms when
tested and slept). Progress is the thread's, not the main thread's (a rank blocked in another
collective, such as a batch-norm sum, would otherwise never post the chunk another rank waits
for).

MPI needs every rank to post the same collectives in the same order, so the thread chooses
by position, from what every rank receives alike, never from its own timing. Collective n is
the next chunk of the most urgent item among those every rank had submitted when collective
n - DEPTH was posted; when there is none, the next chunk of the oldest item with chunks left
(first in, first out: every rank submits the same items, so it waits for its own submit if it
must), so an idle link starts a new bucket at once. The count of items every rank has
submitted rides in the chunks themselves: each carries AGREE_SLOTS extra elements, a
thermometer code of how many items this rank has submitted beyond the count agreed so far
(slot j is 1 when more than j). The chunk is summed over the ranks, so slot j sums to P
exactly when every rank has more than j, and the number of leading slots at P is how many
more items every rank has: the same number on every rank. No collective of its own, ever;
a late rank delays the agreement, never changes the order.

Gathers (overlap-fc) travel whole, without slots, and so does a dtype that cannot count to P
exactly (float16 beyond 2048 ranks). The planner (parallel/planner.py) chooses the chunk size
from the link's alpha and beta; the simulator (parallel/link_model.py) replays this engine.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

from ..backend import get_array_module, to_numpy
from ..comm.order_check import current_origin, labelled
from .engine import ProgressEngine, register
from .progress import _Done

AGREE_SLOTS = 8            # items that one chunk can agree on
DEPTH = 2                  # collectives in flight (1 and 3 measured slower on thesis-cnn)
POLL_S = 1e-4              # between tests of the oldest request
DEFAULT_CHUNK = 64 << 10


class _Item:
    """One submitted buffer: its chunks still to post, and the handle its waiters hold."""

    def __init__(self, priority: int, seq: int, chunks: list, post):
        self.priority, self.seq, self.chunks, self.post = priority, seq, chunks, post
        self.left = len(chunks)
        self.done = _Done()


class _Posted:
    """One chunk in flight: the count its slots were relative to, what to do when done."""

    def __init__(self, request, base: int, item: _Item, finish):
        self.request, self.base, self.item, self.finish = request, base, item, finish


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
        self._items: list[_Item] = []       # submitted, chunks left to post, in posting order
        self._posted = 0                    # items submitted on this rank
        self._closing = False
        self._inflight: deque[_Posted] = deque()
        self._sent = 0                      # collectives posted
        self._retired = 0                   # collectives completed
        # the agreed count after each of the last retired collectives (by position)
        self._agreed_after: deque[int] = deque([0], maxlen=DEPTH + 1)
        self._thread = threading.Thread(target=self._run, name="dptrain-comm", daemon=True)
        self._thread.start()

    def _enqueue(self, chunks: list, priority: int, post) -> _Item:
        with self._cv:
            item = _Item(priority, self._posted, chunks, post)
            self._items.append(item)
            self._posted += 1
            self._cv.notify()
        return item

    def submit(self, buf, priority: int = 0):
        step = max(self.chunk_bytes // buf.itemsize, 1)
        views = [buf[i:i + step] for i in range(0, len(buf), step)]
        slots, origin = _counts_exactly(buf.dtype, self.comm.size), current_origin()

        def reduce(view, offered: int):
            with labelled(origin):
                return self._post_chunk(view, offered, slots)
        return self._enqueue(views, priority, reduce).done

    def submit_gather(self, send, recv, priority: int = 0):
        origin = current_origin()

        def gather(_view, _offered: int):
            with labelled(origin):
                return self.comm.iallgather(send, recv), None
        return self._enqueue([None], priority, gather).done

    def poll(self) -> None:
        """Nothing to do: the thread makes progress by itself."""

    # --- the thread -------------------------------------------------------------------
    def _agreed(self, n: int) -> int:
        """Items agreed after collective n (none before the first); retires up to n."""
        while self._retired <= n:
            self._retire(self._inflight.popleft())
        if n < 0:
            return 0
        return self._agreed_after[n - self._retired]          # from the end: -1 is the last

    def _urgent(self, base: int) -> _Item | None:
        ready = [it for it in self._items if it.seq < base]
        return min(ready, key=lambda it: (it.priority, it.seq)) if ready else None

    def _run(self) -> None:
        try:
            while self._post_next():
                pass
            while self._inflight:
                self._retire(self._inflight.popleft())
        except BaseException as exc:                        # reported to every waiter
            self._fail(exc)

    def _post_next(self) -> bool:
        """Post collective number ``self._sent``; False when closing with nothing left."""
        n = self._sent
        base = self._agreed(n - DEPTH)
        with self._cv:
            # the most urgent agreed item; with none, the oldest with chunks left (FIFO)
            item = self._urgent(base) or (self._items[0] if self._items else None)
            if item is not None:
                offered = self._posted - base
                chunk = item.chunks.pop(0)
                if not item.chunks:
                    self._items.remove(item)
        if item is None:            # the oldest is not submitted here yet: finish, then wait
            while self._inflight:
                self._retire(self._inflight.popleft())
            with self._cv:
                while not self._items and not self._closing:
                    self._cv.wait()
                return bool(self._items)
        request, finish = item.post(chunk, offered)
        self._inflight.append(_Posted(request, base, item, finish))
        self._sent += 1
        return True

    def _post_chunk(self, view, offered: int, slots: bool):
        """Post one chunk's allreduce, with the agreement slots when ``slots``; returns the
        request and what to do once it completes (copy back, count what was agreed)."""
        if not slots:
            return self.comm.iallreduce(view), None
        xp, n = get_array_module(view), len(view)
        stage = xp.empty(n + AGREE_SLOTS, dtype=view.dtype)
        stage[:n] = view
        stage[n:] = xp.asarray(np.arange(AGREE_SLOTS) < offered, dtype=view.dtype)

        def finish() -> int:
            view[...] = stage[:n]
            full = to_numpy(stage[n:]) > self.comm.size - 0.5   # every rank has more than j
            return AGREE_SLOTS if full.all() else int(np.argmin(full))
        return self.comm.iallreduce(stage), finish

    def _retire(self, posted: _Posted) -> None:
        while not posted.request.test():
            time.sleep(POLL_S)
        gained = posted.finish() if posted.finish is not None else 0
        # every rank posted this item, and (FIFO or agreed) every item before it
        agreed = max(self._agreed_after[-1], posted.base + gained, posted.item.seq + 1)
        self._agreed_after.append(agreed)
        self._retired += 1
        item = posted.item
        item.left -= 1
        if item.left == 0:
            item.done.done_at = time.perf_counter()
            item.done._event.set()

    def _fail(self, exc) -> None:
        with self._cv:
            waiting, self._items = self._items, []
        waiting += [p.item for p in self._inflight]
        for it in waiting:
            it.done.error = exc
            it.done.done_at = time.perf_counter()
            it.done._event.set()

    def close(self, wait: bool = True) -> None:
        with self._cv:
            self._closing = True
            self._cv.notify()
        self._thread.join(timeout=5 if wait else 0.5)
