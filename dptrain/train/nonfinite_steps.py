"""A step whose loss or gradients are NaN/inf: the run fails with the reason (exit 3), or,
with --skip-nonfinite N, the step's update is dropped and training goes on, N times at most.
Every rank decides alike: the loss and the reduced gradients are the same on every rank."""
from __future__ import annotations

import math
import sys

from ..errors import TrainingFailure


class NonfiniteSteps:
    def __init__(self, allowed: int, dp, is_root: bool):
        self.allowed, self.dp, self.is_root = allowed, dp, is_root
        self.skipped = 0

    def check(self, r) -> None:
        """``r``: a completed step's results (step_metrics.StepResult)."""
        problem = (f"loss became {r.loss} at step {r.step}" if not math.isfinite(r.loss)
                   else self.dp.nonfinite)
        if not problem:
            return
        if self.skipped >= self.allowed:
            raise TrainingFailure(problem)
        self.dp.discard()
        self.skipped += 1
        if self.is_root:
            print(f"dptrain: warning: {problem}: update skipped "
                  f"({self.skipped} of {self.allowed})", file=sys.stderr)
