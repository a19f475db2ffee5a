"""A watchdog for collectives: one that does not complete in time ends the job.

Code arms it before an operation with a description (operation, bucket, step, bytes) and
disarms it after; a daemon thread checks the deadlines once a second (or faster for short
timeouts). On expiry it calls ``on_expire(message)``; the default prints the message and
aborts the whole MPI job with exit code 3. A blocked MPI call cannot be interrupted from
Python, so ending the job is the only way not to hang.

Time during which this process was stopped (SIGSTOP of the whole job, Slurm suspend, Ctrl-Z)
does not count: the thread ticks every period, and a tick that comes far later than the
period means the process did not run in between, so every deadline moves by the gap. A peer
frozen alone is still noticed: this process's own ticks keep coming on time.
"""
from __future__ import annotations

import itertools
import threading
import time
import weakref
from contextlib import contextmanager

from .order_check import labelled

# a tick this much later than due means the process was stopped (or not scheduled) meanwhile
PAUSE_SLACK_S = 1.0
_live: "weakref.WeakSet[Watchdog]" = weakref.WeakSet()


def abort_job(message: str) -> None:
    from ..last_words import end_job
    end_job(f"dptrain: training failed: {message}", 3)    # the line survives the abort
    import os
    os._exit(3)                      # a single process, or MPI already gone


def any_armed() -> bool:
    """Whether some watchdog of this process bounds an operation in progress."""
    return any(w.armed() for w in list(_live))


class Watchdog:
    def __init__(self, timeout_s: float, rank: int = 0, on_expire=abort_job,
                 clock=time.monotonic, start: bool = True, flag: str = "--comm-timeout"):
        self.timeout_s = float(timeout_s)
        self.rank = rank
        self.on_expire = on_expire
        self.clock = clock
        self.flag = flag
        self.period = min(1.0, max(self.timeout_s / 10, 0.01))
        self._armed: dict[int, tuple[float, str, float]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_tick = clock()
        self.paused_s = 0.0                 # stopped time discounted so far
        self.fired: str | None = None
        _live.add(self)
        self._thread = threading.Thread(target=self._watch, name="dptrain-watchdog", daemon=True)
        if start:
            self._thread.start()

    def arm(self, what: str, timeout_s: float | None = None) -> int:
        token = next(self._ids)
        limit = self.timeout_s if timeout_s is None else float(timeout_s)
        with self._lock:
            self._armed[token] = (self.clock() + limit, what, limit)
        return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)

    def armed(self) -> bool:
        with self._lock:
            return bool(self._armed)

    @contextmanager
    def guard(self, what: str, timeout_s: float | None = None):
        token = self.arm(what, timeout_s)
        try:
            yield
        finally:
            self.disarm(token)

    def tick(self) -> str | None:
        """One check: discount a pause since the last tick, then return the first operation
        past its deadline (with why), or None."""
        now = self.clock()
        gap = now - self._last_tick - self.period
        self._last_tick = now
        with self._lock:
            if gap > PAUSE_SLACK_S:            # stopped (or starved) for ``gap`` seconds
                self.paused_s += gap
                self._armed = {k: (d + gap, w, t) for k, (d, w, t) in self._armed.items()}
            late = [(what, limit) for deadline, what, limit in self._armed.values() if deadline < now]
        if not late:
            return None
        what, limit = late[0]
        return f"rank {self.rank}: {what} did not complete within {limit:g} s ({self.flag})"

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            message = self.tick()
            if message:
                self.fired = message
                self.on_expire(message)
                return

    def close(self) -> None:
        self._stop.set()
        _live.discard(self)
        if self._thread.is_alive():
            self._thread.join(timeout=2)


@contextmanager
def guarded(watchdog, what: str):
    """Name the collectives posted inside (for --check-collectives) and, with a watchdog,
    end the job if they do not complete within its timeout."""
    with labelled(what):
        if watchdog is None:
            yield
        else:
            with watchdog.guard(what):
                yield
