"""How much faster a more involved plan must be predicted before auto takes it: the planner's
fixed margin plus the uncertainty of the measurements the prediction was made from.

The simulator's prediction is no better than its inputs. On a loaded machine the layer times
of the warm-up steps and the probe's Allreduce times scatter: the same job measured twice read
its link at 1.1 and at 44 Gbit/s and picked blocking once, overlap with 5 buckets the next
time. A plan is only as real as the difference between the predictions, so the margin a more
involved schedule must beat grows with the measured spread:

    margin = planner.MARGIN + K * (compute spread + link spread * communication share)

The compute spread is the interquartile range over the median of the warm-up steps' total
layer time (slowest rank); the link spread the same of the probe's largest transfer, scaled by
the part of the blocking step its communication takes (an uncertain link moves only that
part). K = 2 covers the difference of two uncertain predictions; the margin is capped at
MAX_MARGIN so a noisy measurement still lets a plan that pays for itself plainly win.
Ties go to the simpler plan: blocking with one bucket unless overlap's gain exceeds the margin.
"""
from __future__ import annotations

import numpy as np

from ..comm.link_probe import relative_spread
from . import planner

K = 2.0
MAX_MARGIN = 0.15


def step_spread(samples_by_cat: dict) -> float:
    """Relative spread of the per-step total over the timed steps (``samples_by_cat``: per
    category, per layer, the durations in call order, as autotune.LayerClock keeps them)."""
    rows = [v for layers in samples_by_cat.values() for v in layers if v]
    if not rows:
        return 0.0
    n = min(len(v) for v in rows)
    return relative_spread(np.sum([v[:n] for v in rows], axis=0))


def margin(compute_spread: float, link_spread: float, comm_share: float) -> float:
    m = planner.MARGIN + K * (compute_spread + link_spread * min(max(comm_share, 0.0), 1.0))
    return float(min(m, MAX_MARGIN))


def choose(times, p, link, schedules, fc_layers, global_batch, itemsize, bucket_bytes,
           compute_spread: float, **options) -> tuple[planner.Plan, float]:
    """planner.choose at the margin the measurements' spread calls for, and that margin
    (``options``: the planner's own, e.g. the progress engines to choose from)."""
    args = (times, p, link, schedules, fc_layers, global_batch, itemsize)
    first = planner.choose(*args, bucket_bytes=bucket_bytes, **options)
    simplest = next(s for s in planner.ORDER if s in first.predicted)
    pred = first.predicted[simplest]
    share = pred["exposed_s"] / pred["step_s"] if pred["step_s"] > 0 else 0.0
    m = margin(compute_spread, getattr(getattr(link, "flat", link), "spread", 0.0), share)
    if m == planner.MARGIN:
        return first, m
    return planner.choose(*args, bucket_bytes=bucket_bytes, margin=m, **options), m
