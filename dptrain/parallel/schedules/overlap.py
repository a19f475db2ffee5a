"""``overlap`` (Lee et al., HiPC 2017): a bucket's Allreduce starts the moment its last
layer's gradients are final and runs while backprop continues below it; each bucket's update
is deferred to just before its first layer runs in the next forward pass (one pass over the
bucket: optim/flat.py), so the reductions of the first layers (finished last) overlap the
next forward pass too."""
from __future__ import annotations

import time

from ...comm.order_check import labelled
from ..protocol import check_reduced
from .registry import register
from .base import Schedule
from .blocking import Blocking


@register
class Overlap(Schedule):
    name = "overlap"
    help = "Allreduce during backprop"
    overlaps = True

    def __init__(self, dp):
        super().__init__(dp)
        self.deferred: dict[int, float] = {}    # layer index -> lr of its update

    @classmethod
    def resolve(cls, size: int, fc_layers) -> type:
        return Blocking if size == 1 else cls

    def forward_hooks(self, communicate: bool) -> tuple:
        return (self.apply_deferred if self.deferred else None), None

    def grad_ready(self, i: int) -> None:
        dp = self.dp
        b = dp.bucket_of.get(i)
        if b is None:
            return
        b.pending.discard(i)
        if not b.pending:
            dp.prepare(b)
            b.posted_at = time.perf_counter()
            b.posted_step = dp.tracer.step if dp.tracer is not None else None
            what = f"allreduce of bucket {b.index} ({b.wire.nbytes} bytes) at step {dp.step}"
            if dp.watchdog is not None:
                b.watch = dp.watchdog.arm(what, "step")
            with labelled(what):
                b.handle = dp.engine.submit(b.wire, priority=min(b.layers))
            b.posted = True
            b.reset()
            if b.index == len(dp.buckets) - 1:
                dp.accumulated = None           # every bucket has taken its share
        dp.engine.poll()

    def empty_backward(self) -> None:
        dp = self.dp
        for i in range(len(dp.model.layers) - 1, -1, -1):     # the usual order
            if dp.model.layers[i].params:
                dp.layer_ready(i)

    def step_end(self, lr: float) -> None:
        dp = self.dp
        self.deferred = {i: lr for b in dp.buckets for i in b.layers}
        if dp.settle_each_step:
            for b in dp.buckets:
                dp.complete(b)
                dp.check_finite(b)

    def apply_deferred(self, i: int) -> None:
        dp = self.dp
        dp.engine.poll()
        lr = self.deferred.pop(i, None)
        if lr is None:
            return
        self._update(i, self._complete_for(i), lr)

    def _complete_for(self, i: int) -> tuple:
        """Complete what layer i's update waits for; the layers updated with it."""
        dp = self.dp
        b = dp.bucket_of[i]
        check_reduced(b, dp.step - 1)
        if b.handle is not None:
            dp.complete(b)
            dp.check_finite(b)
        b.posted = False
        # The forward reaches a bucket's lowest layer first and all its layers are still
        # ahead: update them together, one pass over the bucket (optim/flat.py).
        return (i,) + tuple(j for j in b.layers if self.deferred.pop(j, None) is not None)

    def _update(self, i: int, layers: tuple, lr: float) -> None:
        dp = self.dp
        t0 = time.perf_counter()
        dp.optimizer.update_layers(layers, lr)
        if dp.tracer is not None:
            dp.tracer.span(f"update {i}", "update", t0, time.perf_counter(), layer=i,
                           layers=list(layers))

    def flush(self) -> None:
        for i in sorted(self.deferred):
            self.apply_deferred(i)

    def discard(self) -> None:
        self.deferred = {}
        for b in self.dp.buckets:
            if b.handle is not None:
                self.dp.complete(b)
            b.posted = False

    def snapshot(self):
        return dict(self.deferred)

    def restore(self, state) -> None:
        self.deferred = dict(state)
