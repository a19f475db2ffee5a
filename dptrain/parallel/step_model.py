"""The step-time model of the planner and the predictions: one training step replayed in
steady state from per-layer compute times and the alpha-beta network model (predict.py
describes the model; schedules pass their traits to ``simulate``). A leaf: it knows no
schedule by name."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..comm.emulated import AlphaBeta
from .link_model import SimLink
from .priority import AGREE_SLOTS


@dataclass
class LayerTimes:
    fwd: list[float]                    # seconds per layer, at the per-rank batch measured
    bwd: list[float]
    upd: list[float]
    param_bytes: list[int]              # gradient bytes per layer (0: no parameters)
    fc_shape: dict = field(default_factory=dict)   # layer -> (n_in, n_out) for Dense layers
    batch: int = 1                      # per-rank batch these times were measured at

    def scaled(self, batch: int) -> "LayerTimes":
        """Compute times for another per-rank batch (proportional; updates do not scale)."""
        f = batch / self.batch
        return LayerTimes([t * f for t in self.fwd], [t * f for t in self.bwd], list(self.upd),
                          list(self.param_bytes), dict(self.fc_shape), batch)


def buckets_of(times: LayerTimes, bucket_bytes: int, exclude=()) -> list[list[int]]:
    """Reverse layer order up to the byte cap, as comm.buckets does."""
    groups, current, size = [], [], 0
    for i in range(len(times.param_bytes) - 1, -1, -1):
        if not times.param_bytes[i] or i in exclude:
            continue
        current.append(i)
        size += times.param_bytes[i]
        if size >= bucket_bytes:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def simulate(times: LayerTimes, p: int, net: AlphaBeta, overlaps: bool, replicates_fc: bool,
             bucket_bytes: int = 4 << 20, fc_layers=(), global_batch: int | None = None,
             flops_per_s: float = 1e11, itemsize: int = 4, groups=None,
             chunk_bytes: int | None = None) -> dict:
    """Steady-state step time (seconds) and its parts on p ranks, for a schedule that
    ``overlaps`` reductions with backprop (else all after it) and ``replicates_fc`` layers;
    ``groups`` (layer indices per bucket, in posting order) replaces the byte cap's buckets.
    ``chunk_bytes``: the priority engine with chunks of that size (link_model.py), else one
    first-in-first-out link."""
    n = len(times.fwd)
    fc_layers = [i for i in fc_layers if i in times.fc_shape] if replicates_fc else []
    if groups is None:
        groups = buckets_of(times, bucket_bytes, exclude=set(fc_layers))
    comm_total = sum(net.allreduce(p, sum(times.param_bytes[i] for i in g)) for g in groups)
    gb = global_batch or times.batch * p
    rows = -(-gb // p)
    gather = {i: (net.allgather(p, p * rows * times.fc_shape[i][0] * itemsize),
                  net.allgather(p, p * rows * times.fc_shape[i][1] * itemsize)) for i in fc_layers}
    fc_grad = {i: 2 * gb * times.fc_shape[i][0] * times.fc_shape[i][1] / flops_per_s for i in fc_layers}
    # a replicated layer's backward computes dX only: half of a Dense backward (dW + dX)
    bwd = [t / 2 if i in fc_grad else t for i, t in enumerate(times.bwd)]
    comm_total += sum(a + b for a, b in gather.values())
    compute = sum(times.fwd) + sum(bwd) + sum(times.upd) + sum(fc_grad.values())
    if not overlaps or p == 1:
        step = compute + comm_total
        return {"step_s": step, "compute_s": compute, "comm_s": comm_total,
                "exposed_s": step - compute}
    # one step with overlap, in steady state: the previous step's reductions finish during
    # this step's forward; simulate two steps and measure the second
    link = SimLink(priority=chunk_bytes is not None)

    def reduction(nbytes: int) -> list[float]:
        if chunk_bytes is None:
            return [net.allreduce(p, nbytes)]
        sizes = [chunk_bytes] * (nbytes // chunk_bytes) + [nbytes % chunk_bytes] * bool(nbytes % chunk_bytes)
        return [net.allreduce(p, n + AGREE_SLOTS * itemsize) for n in sizes]

    ready_at, clock = {}, 0.0
    step_start = []
    for _ in range(2):
        step_start.append(clock)
        x_post = {}
        for i in range(n):                                  # forward
            if i in ready_at:
                clock = max([clock] + [link.end(op) for op in ready_at.pop(i)]) \
                    + times.upd[i] + fc_grad.get(i, 0.0)
            clock += times.fwd[i]
            if i in gather:                                 # post the gather of its input
                x_post[i] = link.post(clock, i, [gather[i][0]], agrees=False)
        pending = {tuple(g): set(g) for g in groups}
        for i in range(n - 1, -1, -1):                      # backward
            clock += bwd[i]
            if i in gather:
                ready_at[i] = [link.post(clock, i, [gather[i][1]], agrees=False), x_post[i]]
                continue
            for g, left in pending.items():
                if i in left:
                    left.discard(i)
                    if not left:
                        op = link.post(clock, min(g), reduction(sum(times.param_bytes[j] for j in g)))
                        for j in g:
                            ready_at[j] = [op]
    step = clock - step_start[1]
    return {"step_s": step, "compute_s": compute, "comm_s": comm_total,
            "exposed_s": max(step - compute, 0.0)}
