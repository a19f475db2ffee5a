"""SIGTERM / SIGINT (a scheduler's time limit, Ctrl-C): finish the step, checkpoint, exit 0.

The handler only records the signal; the trainer reduces the flag with the step's metrics,
so every rank stops after the same step even if only some of them were signalled. A second
signal while stopping is not delayed again: ``on_second_signal`` runs at once (the trainer
ends the job there, or raises), else KeyboardInterrupt is raised.
"""
from __future__ import annotations

import signal

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequested(Exception):
    """Raised by the trainer once every rank agreed to stop after a signal."""


class PreemptionGuard:
    def __init__(self, on_second_signal=None):
        self.signum = 0
        self.on_second_signal = on_second_signal
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum:
            if self.on_second_signal is None:
                raise KeyboardInterrupt
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
