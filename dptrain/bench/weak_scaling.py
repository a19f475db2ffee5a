"""Weak-scaling efficiency from wall time, differenced so that start-up and warm-up cancel.

A worker notes the wall clock when its timed steps begin (after ``warmup`` steps: the short
run) and when they end (after ``warmup + steps``: the long run); the job's wall time per
step is (T(long) - T(short)) / (long - short) on its slowest rank. Every stall, wait and
hiccup in between counts, unlike the median step. Efficiency at P ranks (fixed batch per
rank) = wall step of 1 rank / wall step of P ranks, paired within each round (rounds
alternate through the rows, so a pair shares the machine's state); the spread over rounds
is reported as min / median / max.
"""
from __future__ import annotations

import statistics


def differenced_step_s(t_short: float, t_long: float, short_steps: int, long_steps: int) -> float:
    """Wall seconds per step between the end of the short run and the end of the long one."""
    if long_steps <= short_steps:
        raise ValueError(f"the long run ({long_steps} steps) must be longer than the short "
                         f"one ({short_steps})")
    return (t_long - t_short) / (long_steps - short_steps)


def paired_efficiencies(base: list[float | None], walls: list[float | None]) -> list[float]:
    """Round r's efficiency = base[r] / walls[r], for the rounds where both were measured."""
    return [b / w for b, w in zip(base, walls) if b and w]


def spread(values: list[float]) -> dict | None:
    """min, median and max over rounds (None: no round measured)."""
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values),
            "rounds": len(values)}
