"""Per-layer forward, backward and update durations of the steps auto times
(parallel/autotune.py), collected through the tracer hooks."""
from __future__ import annotations

import numpy as np


class LayerClock:
    """Collects per-layer forward/backward/update durations through the tracer hooks of
    Sequential and DataParallel, passing every span on to the real tracer (--trace), if any."""

    active = True

    def __init__(self, n_layers: int, inner=None):
        self.inner = inner
        self.passes_on = True          # False while rehearsing: no training step to trace
        self.times = {cat: [[] for _ in range(n_layers)] for cat in ("forward", "backward", "update")}

    @property
    def step(self):
        return self.inner.step if self.inner is not None else 0

    @property
    def t0(self):
        return self.inner.t0 if self.inner is not None else 0.0

    def span(self, name, cat, start, end, lane=0, step=None, **args):
        if cat in self.times and "layer" in args:
            self.times[cat][args["layer"]].append(end - start)
        if self.inner is not None and self.passes_on:
            self.inner.span(name, cat, start, end, lane=lane, step=step, **args)

    def medians(self) -> np.ndarray:
        """(3, layers): median seconds per call; 0 where a layer never ran (no parameters,
        or below the first parametrised layer in backprop)."""
        return np.array([[float(np.median(v)) if v else 0.0 for v in self.times[cat]]
                         for cat in ("forward", "backward", "update")])
