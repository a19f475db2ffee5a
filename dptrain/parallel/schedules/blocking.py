"""``blocking`` (seed 000, Algorithm 2): backprop the whole model, Allreduce every bucket,
update. The update is applied at the start of the next step (or at flush), so the caller
can still discard() it once it knows the step's global loss."""
from __future__ import annotations

import time

from .. import trace
from .registry import register
from .base import Schedule


@register
class Blocking(Schedule):
    name = "blocking"

    def __init__(self, dp):
        super().__init__(dp)
        self.pending_lr = None                  # lr of the step not yet applied

    def start_step(self) -> None:
        if self.pending_lr is not None:
            self._apply_pending()

    def forward_hooks(self, communicate: bool) -> tuple:
        return None, None

    def grad_ready(self, i: int) -> None:
        raise AssertionError("blocking posts nothing during backprop")

    def empty_backward(self) -> None:
        pass

    def step_end(self, lr: float) -> None:
        dp = self.dp
        t0 = time.perf_counter()
        for b in dp.buckets:
            self._reduce(b)
        spent = time.perf_counter() - t0
        dp.stats.comm_s += spent
        dp.stats.exposed_s += spent
        dp.accumulated = None
        self.pending_lr = lr

    def _reduce(self, b) -> None:
        dp = self.dp
        dp.prepare(b)
        t0 = time.perf_counter()
        with dp.guard(f"allreduce of bucket {b.index} ({b.wire.nbytes} bytes) at step {dp.step - 1}",
                      "step"):
            dp.comm.allreduce(b.wire)
        if dp.tracer is not None:
            t1 = time.perf_counter()
            trace.reduction(dp.tracer, b, t0, t1, t0, t1)
        dp.unpack(b)
        dp.check_finite(b)

    def _apply_pending(self) -> None:
        dp = self.dp
        lr, self.pending_lr = self.pending_lr, None
        if dp.tracer is None:
            dp.optimizer.step(lr)
            return
        for i, layer in enumerate(dp.model.layers):      # per layer, for the timeline
            if layer.params:
                t0 = time.perf_counter()
                dp.optimizer.update(i, lr)
                dp.tracer.span(f"update {i}", "update", t0, time.perf_counter(), layer=i)

    def flush(self) -> None:
        if self.pending_lr is not None:
            self._apply_pending()

    def discard(self) -> None:
        self.pending_lr = None

    def snapshot(self):
        return self.pending_lr

    def restore(self, state) -> None:
        self.pending_lr = state
