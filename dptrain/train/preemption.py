"""SIGTERM / SIGINT (a scheduler's time limit, Ctrl-C): finish the step, checkpoint, exit 0.

The handler only records the signal; the trainer reduces the flag with the step's metrics,
so every rank stops after the same step even if only some of them were signalled. A second
signal while stopping is not delayed again: ``on_second_signal`` runs at once (the trainer
ends the job there, or raises), else it raises Interrupted at once.

Outside the training loop (start-up, which reads data and builds the model, and the end)
``interrupt_on_signals`` makes either signal raise Interrupted at once: nothing is written
there that a signal could leave half-done, and the command exits 128 + the signal's number.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    """Raised by the trainer once every rank agreed to stop after a signal."""


class Interrupted(KeyboardInterrupt):
    """A signal that ends the command at once (exit 128 + signum)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _interrupt(signum, frame):
    raise Interrupted(signum)


@contextmanager
def signals_held():
    """Hold SIGTERM and SIGINT back (delivered on exit) while MPI starts: an exception raised
    inside the import of mpi4py.MPI would leave MPI initialised but out of reach, so this rank
    could neither abort the job nor leave it, and the others would wait for it for ever."""
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    except (AttributeError, ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def interrupt_on_signals() -> None:
    for sig in SIGNALS:
        try:
            signal.signal(sig, _interrupt)
        except ValueError:                # not the main thread
            pass


class PreemptionGuard:
    def __init__(self, on_second_signal=None):
        self.signum = 0
        self.on_second_signal = on_second_signal
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum:
            if self.on_second_signal is None:
                raise Interrupted(signum)
            self.on_second_signal()
            return
        self.signum = signum

    def __enter__(self):
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:            # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, exc_type, *exc):
        stopping = exc_type is StopRequested
        for sig, handler in self._previous.items():
            # once stopped, the run only reports and exits: a late signal changes nothing
            signal.signal(sig, signal.SIG_IGN if stopping else handler)
        return False
