"""Reducing each step's loss, accuracy and stop flag over the ranks, without stalling overlap.

Every rank must see the same loss (a NaN stops every rank at the same step) and the same
stop flag (a signal stops every rank after the same step). A blocking Allreduce at the end
of every step would wait behind the gradient reductions still on the wire and so give back
the overlap with the next forward pass. With ``deferred`` the step's numbers travel in a
non-blocking Allreduce that is completed one step later: logging, NaN detection and
stopping then lag by one step (the failing step is still named exactly). Synchronous mode
is used where a decision must come before the next step's updates (--skip-nonfinite).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class StepResult:
    step: int            # 0-based global step
    loss: float          # global mean loss of the step's batch
    correct: int         # correct predictions in the global batch
    lr: float
    stop: bool           # some rank was asked to stop
    samples: int         # global batch size


class StepMetrics:
    def __init__(self, comm, guard, deferred: bool):
        self.comm, self.guard, self.deferred = comm, guard, deferred
        self._pending = None

    def post(self, step: int, lr: float, samples: int, loss: float, correct: int,
             stop: int) -> list[StepResult]:
        """Reduce this step's numbers; returns the results that are complete now."""
        buf = np.array([loss, correct, stop], dtype=np.float64)
        if not self.deferred:
            with self.guard(f"allreduce of the step metrics at step {step}"):
                self.comm.allreduce(buf)
            return [self._result(step, lr, samples, buf)]
        done = self.drain()
        what = f"allreduce of the step metrics at step {step}"
        self._pending = (self.comm.iallreduce(buf), buf, step, lr, samples, what)
        return done

    def drain(self) -> list[StepResult]:
        if self._pending is None:
            return []
        handle, buf, step, lr, samples, what = self._pending
        self._pending = None
        with self.guard(what):
            handle.wait()
        return [self._result(step, lr, samples, buf)]

    @staticmethod
    def _result(step, lr, samples, buf) -> StepResult:
        return StepResult(step, float(buf[0]), int(round(buf[1])), lr, bool(buf[2] > 0), samples)
