"""SIGTERM / SIGINT (a scheduler's time limit, Ctrl-C): finish the step, checkpoint, exit 0.

The handler only records the signal; the trainer reduces the flag with the step's metrics,
so every rank stops after the same step even if only some of them were signalled. A second
signal while stopping is not delayed again: ``on_second_signal(signum)`` runs at once (the
trainer ends the job there with 128 + signum, or raises), else it raises Interrupted at once.
While the guard is in force the signal watcher (interrupts.py) lets a rank blocked in a
bounded collective finish it instead of ending the job on the first signal.

Outside the training loop (start-up, which reads data and builds the model, and the end)
``interrupt_on_signals`` makes either signal raise Interrupted at once: nothing is written
there that a signal could leave half-done, and the command exits 128 + the signal's number.
"""
from __future__ import annotations

import signal

from ..interrupts import SIGNALS, Interrupted, acted, interrupt_on_signals, patient  # noqa: F401


class StopRequested(Exception):
    """Raised by the trainer once every rank agreed to stop after a signal."""


class PreemptionGuard:
    def __init__(self, on_second_signal=None, after_completion=None):
        """``after_completion``: the handler to leave in place when the loop ends normally
        (the command's: interrupts.record_only), else the one found on entry."""
        self.signum = 0
        self.on_second_signal = on_second_signal
        self.after_completion = after_completion
        self._previous = {}

    def _handle(self, signum, frame):
        acted(signum)
        if self.signum:
            if self.on_second_signal is None:
                raise Interrupted(signum)
            self.on_second_signal(signum)
            return
        self.signum = signum

    def __enter__(self):
        self._patience = patient()
        self._patience.__enter__()
        for sig in SIGNALS:
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:            # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, exc_type, *exc):
        self._patience.__exit__(None, None, None)
        stopping = exc_type is StopRequested
        for sig, handler in self._previous.items():
            # once stopped, the run only reports and exits: a late signal changes nothing
            if stopping:
                handler = signal.SIG_IGN
            elif exc_type is None and self.after_completion is not None:
                handler = self.after_completion
            signal.signal(sig, handler)
        return False


def stop_at_once(size: int, is_root: bool, signum: int) -> None:
    """A second SIGINT/SIGTERM while stopping: end the job now (128 + signum), without
    unwinding through MPI calls. Other ranks carry on stopping: rank 0 may be waiting for
    them in a collective before it can see its own signal, say why, and end the job."""
    if size == 1:
        raise Interrupted(signum)
    if is_root:
        from ..last_words import end_job
        end_job(f"dptrain: interrupted again by {signal.Signals(signum).name}: ending the "
                "job now, without a checkpoint", 128 + signum)
