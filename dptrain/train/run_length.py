"""How long a run is: --epochs, --max-steps, or both, and which of them ends it.

``--max-steps N`` alone runs N steps, over as many epochs as they need (as PyTorch
Lightning's max_steps without max_epochs); ``--epochs E`` alone runs E epochs; with both,
whichever comes first ends the run. The first line of a run says which one it is.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class RunLength:
    epochs: int            # epochs started, the last one possibly partial
    total_steps: int
    ends_by: str           # the flag whose limit ends the run

    def describe(self, steps_per_epoch: int) -> str:
        return (f"{self.total_steps} steps ({self.ends_by}; {steps_per_epoch} steps "
                f"per epoch)")


def resolve(epochs: int | None, max_steps: int | None, steps_per_epoch: int) -> RunLength:
    if max_steps is not None and epochs is None:
        return RunLength(math.ceil(max_steps / steps_per_epoch), max_steps, "--max-steps")
    epochs = 1 if epochs is None else epochs
    by_epochs = epochs * steps_per_epoch
    if max_steps is not None and max_steps < by_epochs:
        return RunLength(math.ceil(max_steps / steps_per_epoch), max_steps, "--max-steps")
    return RunLength(epochs, by_epochs, "--epochs" if epochs != 1 or max_steps else
                     "--epochs 1, the default")
