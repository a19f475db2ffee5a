"""Learning-rate schedules: functions of the global step, so every rank agrees."""
from __future__ import annotations

import math


class Schedule:
    """lr(step) for step = 0, 1, ...; ``warmup_steps`` ramps linearly from 0 first."""

    def __init__(self, base_lr: float, kind: str = "constant", total_steps: int = 0,
                 step_size: int = 1000, gamma: float = 0.1, min_lr: float = 0.0,
                 warmup_steps: int = 0):
        if kind not in SCHEDULES:
            raise ValueError(f"unknown schedule {kind!r} (choose {', '.join(SCHEDULES)})")
        self.base_lr, self.kind = float(base_lr), kind
        self.total_steps, self.step_size, self.gamma = int(total_steps), int(step_size), float(gamma)
        self.min_lr, self.warmup_steps = float(min_lr), int(warmup_steps)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.base_lr * (step + 1) / self.warmup_steps
        s = step - self.warmup_steps
        if self.kind == "step":
            return self.base_lr * self.gamma ** (s // max(self.step_size, 1))
        if self.kind == "cosine":
            span = max(self.total_steps - self.warmup_steps, 1)
            frac = min(s / span, 1.0)
            return self.min_lr + 0.5 * (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * frac))
        return self.base_lr


SCHEDULES = ("constant", "step", "cosine")
