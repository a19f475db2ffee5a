"""A watchdog for collectives: one that does not complete in time ends the job.

Code arms it before an operation with a description (operation, bucket, step, bytes) and
disarms it after; a daemon thread checks the deadlines once a second (or faster for short
timeouts). On expiry it calls ``on_expire(message)``; the default prints the message and
aborts the whole MPI job with exit code 3. A blocked MPI call cannot be interrupted from
Python, so ending the job is the only way not to hang.
"""
from __future__ import annotations

import itertools
import threading
import time
from contextlib import contextmanager

from .order_check import labelled


def abort_job(message: str) -> None:
    from ..last_words import end_job
    end_job(f"dptrain: training failed: {message}", 3)    # the line survives the abort
    import os
    os._exit(3)                      # a single process, or MPI already gone


class Watchdog:
    def __init__(self, timeout_s: float, rank: int = 0, on_expire=abort_job):
        self.timeout_s = float(timeout_s)
        self.rank = rank
        self.on_expire = on_expire
        self._armed: dict[int, tuple[float, str]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.fired: str | None = None
        self._thread = threading.Thread(target=self._watch, name="dptrain-watchdog", daemon=True)
        self._thread.start()

    def arm(self, what: str) -> int:
        token = next(self._ids)
        with self._lock:
            self._armed[token] = (time.monotonic() + self.timeout_s, what)
        return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)

    @contextmanager
    def guard(self, what: str):
        token = self.arm(what)
        try:
            yield
        finally:
            self.disarm(token)

    def _watch(self) -> None:
        period = min(1.0, max(self.timeout_s / 10, 0.01))
        while not self._stop.wait(period):
            now = time.monotonic()
            with self._lock:
                late = [what for deadline, what in self._armed.values() if deadline < now]
            if late:
                self.fired = (f"rank {self.rank}: {late[0]} did not complete within "
                              f"{self.timeout_s:g} s (--comm-timeout)")
                self.on_expire(self.fired)
                return

    def close(self) -> None:
        self._stop.set()
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
