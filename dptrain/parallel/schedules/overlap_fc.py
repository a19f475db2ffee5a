"""``overlap-fc`` (seed 000, Algorithm 3): ``overlap``, and the fully connected layers chosen
by --fc-replicate all-gather their inputs and output errors instead of all-reducing their
weight gradients (parallel/fc_replication.py: each rank then computes the whole batch's
weight gradient itself, just before the layer's next forward)."""
from __future__ import annotations

from .registry import register
from .blocking import Blocking
from .overlap import Overlap


@register
class OverlapFC(Overlap):
    name = "overlap-fc"
    help = "also all-gathers large FC layers' activations"
    replicates_fc = True
    with_accumulation = False   # the gathered activations are those of one micro-batch

    @classmethod
    def resolve(cls, size: int, fc_layers) -> type:
        if size == 1:
            return Blocking
        return cls if fc_layers else Overlap     # nothing to replicate: plain overlap

    def forward_hooks(self, communicate: bool) -> tuple:
        before, _ = super().forward_hooks(communicate)
        return before, (self.dp.fc.after_forward if communicate else None)

    def grad_ready(self, i: int) -> None:
        dp = self.dp
        if i in dp.fc:
            dp.fc.after_backward(i)
            dp.engine.poll()
            return
        super().grad_ready(i)

    def empty_backward(self) -> None:
        dp = self.dp
        for i in dp.fc.layers:
            dp.fc.post_empty(i, "x")
        for i in range(len(dp.model.layers) - 1, -1, -1):
            if dp.model.layers[i].params:
                if i in dp.fc:
                    dp.fc.post_empty(i, "dy")
                else:
                    dp.layer_ready(i)

    def step_end(self, lr: float) -> None:
        dp = self.dp
        super().step_end(lr)
        self.deferred.update({i: lr for i in dp.fc.layers})
        if dp.settle_each_step:
            for i in dp.fc.layers:
                dp.fc.complete(i)
                dp.check_finite_layer(i)

    def _complete_for(self, i: int) -> tuple:
        dp = self.dp
        if i not in dp.fc:
            return super()._complete_for(i)
        dp.stats.exposed_s += dp.fc.complete(i)
        dp.check_finite_layer(i)
        return (i,)

    def discard(self) -> None:
        dp = self.dp
        for i in dp.fc.layers:
            if i in self.deferred:
                dp.fc.complete(i)
        super().discard()
