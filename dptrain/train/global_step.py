"""One global training step of a Trainer: its micro-batches through the data-parallel
step, the adaptive sampler's observations, the checks of the step's result."""
from __future__ import annotations

import time

from .. import nn
from ..errors import TrainingFailure
from . import faults
from .sampler_feed import SamplerFeed


def run(t, ids, global_batch: int, stop_flag: int = 0, weights=None):
    """One global step; returns the StepResults (global loss, correct, lr, stop) that are
    complete: this step's, or with deferred metrics the previous step's (step_metrics.py).

    With --accumulate N the global batch is cut into N global micro-batches, each
    split over the ranks; every one is normalised by the whole batch, so their sum
    is the same mean gradient. ``weights`` are per-sample loss weights (importance
    sampling). Adaptive samplers then observe the batch's per-sample losses and
    gradient bounds, gathered from every rank.
    """
    faults.maybe_inject(t.fault, t.rank, t.step, t.model)
    if t.tracer is not None:
        t.tracer.step = t.step
    t_step = time.perf_counter()
    lr = t.schedule(t.step)
    micro_batches = t.step_inputs.micro_batches(ids)
    arrays = iter(t.inputs.take(t.step, ids, weights))
    loss_sum, correct_sum = 0.0, 0          # 0-d device arrays on a GPU: not read here
    observed = []
    for j, micro in enumerate(micro_batches):
        at = t.step_inputs.my_positions(micro)                # positions in the batch
        local = ids[at]
        x, y = next(arrays), next(arrays)
        w = None if weights is None else next(arrays)
        ctx = nn.BatchContext(local, t.step, t.cfg.seed)
        step_fn = t.dp.train_step if t.graph is None else t.graph.train_step
        loss, correct = step_fn(x, y, t.loss, t.opt, lr=lr, global_batch=global_batch,
                                context=ctx, communicate=j == len(micro_batches) - 1, weights=w)
        loss_sum, correct_sum = loss_sum + loss, correct_sum + correct
        if t.sampler.adaptive:
            observed.append((micro, SamplerFeed.local_stats(t.loss, y, len(local))))
    if observed:
        t.feed.observe(t.step, ids, observed)
    if t.tracer is not None:
        t.tracer.span(f"step {t.step}", "step", t_step, time.perf_counter(), lane=2)
    if not t.dp.watch.synchronous:
        # Reduced gradients are equal on every rank, so every rank fails at the same step.
        # On a GPU only earlier steps' checks are read: they are done, this one is queued.
        problem = t.dp.watch.check(t.step if t.device_reads else None)
        if problem:
            raise TrainingFailure(problem)
    results = t.step_metrics.post(t.step, lr, global_batch, loss_sum, correct_sum, stop_flag)
    for r in results:
        t.check_step(r)
    if observed:
        t.feed.probe(t.step)
    return results

