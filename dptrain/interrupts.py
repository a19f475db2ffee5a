"""SIGTERM and SIGINT outside the training loop, and a watcher that makes sure either one ends
a rank that cannot act on it.

Python runs a signal handler only in the main thread, between bytecodes: a rank blocked in C
(an MPI call waiting for a peer that never comes) never runs it. So every handler here says
that it ran (``acted``), and a watcher thread, woken through ``signal.set_wakeup_fd`` (which
the interpreter writes from C, whatever the main thread is doing), ends the job itself when
a signal was not acted on within a grace: the rank is blocked. During training the first
signal asks for a clean stop after the step (preemption.py); while the main thread waits in
an operation a watchdog bounds (comm/watchdog.py: --comm-timeout), the watcher waits for it,
since another rank may be writing the checkpoint this rank waits for.

Standard library only: the command line installs these before its heavy imports, so a
Ctrl-C during ``import numpy`` is an interruption (exit 130), not a broken import.
"""
from __future__ import annotations

import os
import select
import signal
import threading
import time
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)
GRACE_S = 3.0             # a main thread that runs Python takes microseconds to act
_state = {"received": 0, "acted": 0, "patient": False, "last": 0}
_lock = threading.Lock()


class Interrupted(KeyboardInterrupt):
    """A signal that ends the command at once (exit 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def acted(signum: int) -> None:
    """A handler ran in the main thread: the watcher need not step in for this signal."""
    with _lock:
        _state["acted"] += 1
        _state["last"] = signum


def signal_received() -> int:
    """The last SIGTERM/SIGINT an interrupting handler ran for (0: none)."""
    return _state["last"]


def _interrupt(signum, frame):
    acted(signum)
    raise Interrupted(signum)


def _handle_both(handler) -> None:
    """``handler`` for SIGTERM and SIGINT (nothing outside the main thread)."""
    for sig in SIGNALS:
        try:
            signal.signal(sig, handler)
        except ValueError:                # not the main thread
            pass


def interrupt_on_signals() -> None:
    _state["last"] = 0
    _handle_both(_interrupt)


STACKS_SIGNAL = signal.SIGQUIT


def dump_stacks_on_sigquit() -> None:
    """``kill -QUIT PID`` makes a rank print every thread's Python stack to stderr and carry
    on (as a JVM does for ``kill -3``): where a rank is, even one blocked in MPI, since the
    dump is written from C by the signal handler itself, without waiting for the main
    thread. The command's, never the API's (the caller's process owns its signals)."""
    import faulthandler
    import sys
    try:
        faulthandler.register(STACKS_SIGNAL, file=sys.stderr, all_threads=True, chain=False)
    except (ValueError, RuntimeError, OSError, AttributeError):
        pass                              # no stderr to write to, or not on this platform


def record_only(signum, frame):
    """The handler once a command's run is complete (its outputs written) but MPI is still
    up: the signal is noted as acted on and nothing stops. A rank stuck in the final barrier
    runs no handler, so the watcher still ends the job for it."""
    acted(signum)


def ignore_from_now() -> None:
    """For a command whose work is complete (its outputs written, every rank past the final
    barrier): a SIGTERM/SIGINT that comes now has nothing left to stop, and acting on it would
    turn a finished run into a failed one (exit 143, or a rank killed in the interpreter's
    shutdown, which mpiexec reports as a bad termination)."""
    _handle_both(signal.SIG_IGN)


@contextmanager
def deferred():
    """Record SIGTERM/SIGINT without raising (raised on leaving) while MPI starts: an exception
    raised inside the import of mpi4py.MPI would leave MPI initialised but out of reach. The
    signals stay deliverable, so a rank blocked there is still ended by the watcher."""
    pending = []
    previous = {}
    for sig in SIGNALS:
        try:
            previous[sig] = signal.signal(sig, lambda signum, frame: pending.append(signum))
        except ValueError:
            pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if pending:
        acted(pending[0])
        raise Interrupted(pending[0])


@contextmanager
def patient():
    """While training: the first signal is a request to stop after the step, and a rank that
    waits in a bounded operation for it is not ended by the watcher."""
    _state["patient"] = True
    try:
        yield
    finally:
        _state["patient"] = False


class Watcher:
    """Ends the job (exit 128 + signum) when the main thread does not act on a SIGTERM/SIGINT."""

    def __init__(self, rank: int, grace_s: float = GRACE_S, end=None):
        self.rank, self.grace_s = rank, grace_s + (1.0 if rank else 0.0)   # rank 0 speaks first
        self._end = end or _end_job
        self._read, self._write = os.pipe()
        os.set_blocking(self._write, False)
        self._previous = None
        self._signum, self._patient = 0, False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="dptrain-signals", daemon=True)

    def __enter__(self):
        _state.update(received=0, acted=0)
        try:
            self._previous = signal.set_wakeup_fd(self._write, warn_on_full_buffer=False)
        except ValueError:                # not the main thread: nothing to watch
            return self
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self._thread.is_alive():
            signal.set_wakeup_fd(self._previous)
            self._stop.set()
            os.write(self._write, b"\0")
            self._thread.join(timeout=2)
        os.close(self._read)
        os.close(self._write)
        return False

    def _watch(self) -> None:
        while not self._stop.is_set():
            if self._received(timeout=1.0):
                self._await()

    def _received(self, timeout: float) -> int:
        """Count the SIGTERM/SIGINT written to the wakeup pipe within ``timeout``; the last one."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        last = 0
        for signum in os.read(self._read, 64) if ready else b"":
            if signum in SIGNALS:
                with _lock:
                    _state["received"] += 1
                    # a second signal is never a request to wait
                    self._patient = _state["patient"] and _state["received"] == 1
                last = signum
        if last:
            self._signum = last
        return last

    def _await(self) -> None:
        from .comm.watchdog import any_armed
        deadline = time.monotonic() + self.grace_s
        while not self._stop.is_set():
            if _state["acted"] >= _state["received"]:
                return
            if self._patient and any_armed():
                deadline = time.monotonic() + self.grace_s      # bounded by --comm-timeout
            elif time.monotonic() >= deadline:
                break
            self._received(timeout=0.05)
        if not self._stop.is_set():
            name = signal.Signals(self._signum).name
            self._end(f"dptrain: {f'rank {self.rank}: ' if self.rank else ''}interrupted by "
                      f"{name} (blocked: no response within {self.grace_s:g} s; ending the job)",
                      128 + self._signum)


def _end_job(line: str, code: int) -> None:
    from .last_words import end_job
    end_job(line, code)
    os._exit(code)                        # no MPI job to end: this process alone
