"""Reducing each step's loss, accuracy and stop flag over the ranks, without stalling overlap
or the device.

Every rank must see the same loss (a NaN stops every rank at the same step) and the same
stop flag (a signal stops every rank after the same step). A blocking Allreduce at the end
of every step would wait behind the gradient reductions still on the wire and so give back
the overlap with the next forward pass; reading a GPU loss on the host at once would drain
the device's queue every step. With ``deferred`` each step's numbers go through a pipeline:

    copy to the host   queued behind the step's kernels (backend.HostCopy); on a GPU it is
                       read when the next step has been queued, on a CPU at once
    Allreduce          non-blocking over MPI, completed when the next numbers are posted

so logging, NaN detection and stopping lag one step on a CPU and two on a GPU (the failing
step is still named exactly). Synchronous mode is used where a decision must come before
the next step's updates (--skip-nonfinite).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import backend


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
        self._copying = None        # (HostCopy of [loss, correct], stop, step, lr, samples)
        self._reducing = None       # (handle, host buffer, step, lr, samples, what)

    def post(self, step: int, lr: float, samples: int, loss, correct, stop: int) -> list[StepResult]:
        """Reduce this step's numbers (host floats or 0-d device arrays); returns the results
        that are complete now."""
        copy = backend.HostCopy(backend.stack_scalars([loss, correct]))
        if not self.deferred:
            return [self._reduce_now(copy, stop, step, lr, samples)]
        done = self._finish_reduction()
        if self._copying is not None:              # the previous step's copy: ready by now
            self._start_reduction(*self._copying)
            self._copying = None
        entry = (copy, stop, step, lr, samples)
        if self._reducing is None and copy.ready:  # host values: reduce at once (one step lag)
            self._start_reduction(*entry)
        else:
            self._copying = entry
        return done

    def drain(self) -> list[StepResult]:
        """Everything still in the pipeline, completed now (end of epoch, checkpoint, failure)."""
        done = self._finish_reduction()
        if self._copying is not None:
            done.append(self._reduce_now(*self._copying))
            self._copying = None
        return done

    def _host_buffer(self, copy, stop):
        loss, correct = copy.value()
        return np.array([loss, correct, stop], dtype=np.float64)

    def _reduce_now(self, copy, stop, step, lr, samples) -> StepResult:
        buf = self._host_buffer(copy, stop)
        with self.guard(f"allreduce of the step metrics at step {step}"):
            self.comm.allreduce(buf)
        return self._result(step, lr, samples, buf)

    def _start_reduction(self, copy, stop, step, lr, samples) -> None:
        buf = self._host_buffer(copy, stop)
        what = f"allreduce of the step metrics at step {step}"
        self._reducing = (self.comm.iallreduce(buf), buf, step, lr, samples, what)

    def _finish_reduction(self) -> list[StepResult]:
        if self._reducing is None:
            return []
        handle, buf, step, lr, samples, what = self._reducing
        self._reducing = None
        with self.guard(what):
            handle.wait()
        return [self._result(step, lr, samples, buf)]

    @staticmethod
    def _result(step, lr, samples, buf) -> StepResult:
        return StepResult(step, float(buf[0]), int(round(buf[1])), lr, bool(buf[2] > 0), samples)
