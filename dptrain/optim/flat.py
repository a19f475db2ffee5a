"""Which slices of the flat buffers one update pass covers.

Parameters live in one flat buffer in reverse layer order (nn/flat.py); the optimiser
keeps its state slots in buffers of the same layout. Gradients live in communication
buckets (comm/buckets.py: runs of layers in the same reverse order, left on the model as
``model.grad_layout``), or, for layers in no bucket, in a buffer flattened here the same
way. A ``Run`` is a stretch of parameters contiguous in both the parameter layout and one
gradient buffer: a whole bucket normally (the whole model without buckets), split only where
a bucket skips a layer (an FC-replicated one, which has no bucket). One element-wise pass
updates a run: one fused kernel on a GPU (fused.py), a few array operations on the CPU.

Buckets may be rebuilt between steps (the planner regroups them): the plan is then made
again from the new ``model.grad_layout``. Parameters and state never move.
"""
from __future__ import annotations

from ..nn.flat import flat_params, flatten, parametrised_layers


class Run:
    __slots__ = ("first", "end", "lo", "grads")

    def __init__(self, first: int, end: int, lo: int, grads):
        self.first, self.end = first, end        # parameter entries [first, end)
        self.lo = lo                             # the first entry's offset in the parameters
        self.grads = grads                       # the gradients of the run, flat


class FlatPlan:
    def __init__(self, model):
        self.params, self.entries = flat_params(model)
        self.layout = getattr(model, "grad_layout", None)
        index = {(i, name): k for k, (i, name, *_) in enumerate(self.entries)}
        sources = [(b.buffer, b.entries) for b in self.layout or ()]
        covered = {i for b in self.layout or () for i in b.layers}
        own = [i for i in parametrised_layers(model) if i not in covered]
        self._sentinel = None
        if own:                                  # gradients outside every bucket
            sources.append(flatten(model, own, "grads"))
            i, name = sources[-1][1][0][:2]
            self._sentinel = (model.layers[i].grads, name, model.layers[i].grads[name])
        self.runs: list[Run] = []
        self.layer_at: dict[int, tuple] = {}     # layer -> (run, first entry, end entry)
        for grads, grad_entries in sources:
            start = prev = shift = None
            for i, name, g_off, _, _ in grad_entries:
                k = index[(i, name)]
                if start is not None and (k != prev + 1 or g_off - self.entries[k][2] != shift):
                    self._close(start, prev + 1, grads, shift)
                    start = None
                if start is None:
                    start, shift = k, g_off - self.entries[k][2]
                prev = k
            if start is not None:
                self._close(start, prev + 1, grads, shift)
        for r, run in enumerate(self.runs):
            for k in range(run.first, run.end):
                i = self.entries[k][0]
                _, first, end = self.layer_at.get(i, (r, k, k))
                self.layer_at[i] = (r, min(first, k), max(end, k + 1))

    def _close(self, first: int, end: int, grads, shift: int) -> None:
        lo, hi = self.offsets(first, end)
        self.runs.append(Run(first, end, lo, grads[lo + shift:hi + shift]))

    def offsets(self, first: int, end: int) -> tuple[int, int]:
        """Element range of parameter entries [first, end)."""
        last = self.entries[end - 1]
        return self.entries[first][2], last[2] + last[3]

    def valid(self, model) -> bool:
        """False once the buckets were rebuilt, or another optimiser flattened the gradients
        outside them anew."""
        if getattr(model, "grad_layout", None) is not self.layout:
            return False
        return self._sentinel is None or self._sentinel[0][self._sentinel[1]] is self._sentinel[2]

    def pieces(self, layers):
        """(run, first, end) covering ``layers``, adjacent ones in one run merged."""
        spans = sorted(self.layer_at[i] for i in layers if i in self.layer_at)
        merged = []
        for r, first, end in spans:
            if merged and merged[-1][0] == r and merged[-1][2] == first:
                merged[-1][2] = end
            else:
                merged.append([r, first, end])
        return [(self.runs[r], first, end) for r, first, end in merged]
