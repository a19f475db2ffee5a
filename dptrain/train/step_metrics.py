"""Reducing each step's loss, accuracy and stop flag over the ranks, without stalling overlap
or the device.

Every rank must see the same loss (a NaN stops every rank at the same step) and the same
stop flag (a signal stops every rank after the same step). A blocking Allreduce at the end
of every step would wait behind the gradient reductions still on the wire and so give back
the overlap with the next forward pass; reading a GPU loss on the host at once would drain
the device's queue every step. So each step's numbers go through a pipeline of fixed depth:

    ``synchronous``  copied and reduced at once (--skip-nonfinite must decide before the next
                     step's updates; one process on a CPU has nothing to defer)
    ``host``         values already on the host: the Allreduce of step k is posted when step
                     k ends and completed when step k + 1 ends (one step late)
    ``device``       the copy of step k is queued behind its kernels (backend.HostCopy) and
                     read when step k + 1 ends, once that step is queued; its Allreduce is
                     then posted and completed when step k + 2 ends (two steps late)

The depth is chosen once, from what every rank holds alike (the trainer agrees on it over
the ranks), and *never* from whether a copy happens to be ready: readiness is local timing,
and a collective posted on one rank's timing is matched by MPI with whatever the other ranks
posted at that position (a gradient bucket), which mixes up sums or hangs. The failing step
is still named exactly, however late it is read.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from .. import backend
from ..comm.order_check import labelled

PIPELINES = ("synchronous", "host", "device")


@dataclass
class StepResult:
    step: int            # 0-based global step
    loss: float          # global mean loss of the step's batch
    correct: int         # correct predictions in the global batch
    lr: float
    stop: bool           # some rank was asked to stop
    samples: int         # global batch size


class StepMetrics:
    def __init__(self, comm, guard, pipeline: str):
        if pipeline not in PIPELINES:
            raise ValueError(f"unknown metrics pipeline {pipeline!r} (choose {', '.join(PIPELINES)})")
        self.comm, self.guard, self.pipeline = comm, guard, pipeline
        # how many steps' copies wait (unread) before their reduction is posted
        self._copy_depth = 1 if pipeline == "device" else 0
        self._copying: deque = deque()  # (HostCopy of [loss, correct], stop, step, lr, samples)
        self._reducing = None           # (handle, host buffer, step, lr, samples, what)

    def post(self, step: int, lr: float, samples: int, loss, correct, stop: int) -> list[StepResult]:
        """Reduce this step's numbers (host floats or 0-d device arrays); returns the results
        that are complete now. Which collective is posted here depends on the step count
        only, so every rank posts the same ones in the same order."""
        copy = backend.HostCopy(backend.stack_scalars([loss, correct]))
        if self.pipeline == "synchronous":
            return [self._reduce_now(copy, stop, step, lr, samples)]
        done = self._finish_reduction()
        self._copying.append((copy, stop, step, lr, samples))
        if len(self._copying) > self._copy_depth:
            self._start_reduction(*self._copying.popleft())
        return done

    def drain(self) -> list[StepResult]:
        """Everything still in the pipeline, completed now (end of epoch, checkpoint, failure)."""
        done = self._finish_reduction()
        while self._copying:
            done.append(self._reduce_now(*self._copying.popleft()))
        return done

    def _host_buffer(self, copy, stop):
        loss, correct = copy.value()
        return np.array([loss, correct, stop], dtype=np.float64)

    def _reduce_now(self, copy, stop, step, lr, samples) -> StepResult:
        buf = self._host_buffer(copy, stop)
        with self.guard(f"allreduce of the step metrics of step {step}", "step"):
            self.comm.allreduce(buf)
        return self._result(step, lr, samples, buf)

    def _start_reduction(self, copy, stop, step, lr, samples) -> None:
        buf = self._host_buffer(copy, stop)
        what = f"allreduce of the step metrics of step {step}"
        with labelled(what):
            self._reducing = (self.comm.iallreduce(buf), buf, step, lr, samples, what)

    def _finish_reduction(self) -> list[StepResult]:
        if self._reducing is None:
            return []
        handle, buf, step, lr, samples, what = self._reducing
        self._reducing = None
        with self.guard(what, "step"):
            handle.wait()
        return [self._result(step, lr, samples, buf)]

    @staticmethod
    def _result(step, lr, samples, buf) -> StepResult:
        return StepResult(step, float(buf[0]), int(round(buf[1])), lr, bool(buf[2] > 0), samples)
