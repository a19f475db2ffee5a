"""Predict step time and speedup at scale from per-layer compute times and the alpha-beta model.

The simulator replays one training step in steady state:
  - forward: layer i runs for fwd[i] after (overlap) waiting for the reduction carrying its
    parameters from the previous step and applying its update upd[i];
  - backward: layers in reverse, bwd[i] each; a bucket is posted when its last layer's
    gradients are final; one communication channel serves posted operations in order;
  - blocking: all reductions after backprop, then all updates.
A reduction of n bytes costs allreduce(P, n); an FC-replicated layer instead all-gathers
its input (posted after its forward) and output error (after its backward), and computes
dW = X^T dY (2 B n_in n_out FLOPs, at the machine's rate) just before its next forward.
Weak scaling keeps the batch per rank; strong scaling divides a global batch (per-rank
compute times then scale with the per-rank batch).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..comm.emulated import AlphaBeta


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


def simulate(times: LayerTimes, p: int, net: AlphaBeta, schedule: str, bucket_bytes: int = 4 << 20,
             fc_layers=(), global_batch: int | None = None, flops_per_s: float = 1e11,
             itemsize: int = 4, groups=None) -> dict:
    """Steady-state step time (seconds) and its parts for one schedule on p ranks; ``groups``
    (layer indices per bucket, in posting order) replaces the byte cap's buckets."""
    n = len(times.fwd)
    fc_layers = [i for i in fc_layers if i in times.fc_shape] if schedule == "overlap-fc" else []
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
    if schedule == "blocking" or p == 1:
        step = compute + comm_total
        return {"step_s": step, "compute_s": compute, "comm_s": comm_total,
                "exposed_s": step - compute}
    # one step with overlap, in steady state: the previous step's reductions finish during
    # this step's forward; simulate two steps and measure the second
    ready_at, clock, channel = {}, 0.0, 0.0
    step_start = []
    for _ in range(2):
        step_start.append(clock)
        x_post = {}
        for i in range(n):                                  # forward
            if i in ready_at:
                clock = max(clock, ready_at.pop(i)) + times.upd[i] + fc_grad.get(i, 0.0)
            clock += times.fwd[i]
            if i in gather:                                 # post the gather of its input
                channel = max(channel, clock) + gather[i][0]
                x_post[i] = channel
        pending = {tuple(g): set(g) for g in groups}
        for i in range(n - 1, -1, -1):                      # backward
            clock += bwd[i]
            if i in gather:
                channel = max(channel, clock) + gather[i][1]
                ready_at[i] = max(channel, x_post[i])
                continue
            for g, left in pending.items():
                if i in left:
                    left.discard(i)
                    if not left:
                        channel = max(channel, clock) + net.allreduce(
                            p, sum(times.param_bytes[j] for j in g))
                        for j in g:
                            ready_at[j] = channel
    step = clock - step_start[1]
    return {"step_s": step, "compute_s": compute, "comm_s": comm_total,
            "exposed_s": max(step - compute, 0.0)}


def dependency_bound(times: LayerTimes, p: int, net: AlphaBeta, bucket_bytes: int = 4 << 20) -> float:
    """The fraction of communication the layer dependencies allow to hide, whatever the order
    on the wire: bucket b can only overlap the compute between its gradients being final
    (in backprop) and its first layer being needed (in the next forward pass), and one link
    can hide no more than the union of those windows."""
    n = len(times.fwd)
    groups = buckets_of(times, bucket_bytes)
    bwd_end = sum(times.bwd)
    # time from the start of backward until layer i's backward ends
    done, t = {}, 0.0
    for i in range(n - 1, -1, -1):
        t += times.bwd[i]
        done[i] = t
    fwd_start, t = {}, bwd_end
    for i in range(n):
        fwd_start[i] = t
        t += times.fwd[i] + times.upd[i]
    total = hidden = 0.0
    windows = []
    for g in groups:
        cost = net.allreduce(p, sum(times.param_bytes[i] for i in g))
        window = (done[min(g)], fwd_start[min(g)])         # ready when its last layer (min) is
        total += cost
        hidden += min(cost, max(window[1] - window[0], 0.0))
        windows.append(window)
    # one link sends one thing at a time: no more than the union of the windows is hideable
    union, end = 0.0, -float("inf")
    for a, b in sorted(windows):
        if b > max(a, end):
            union += b - max(a, end)
            end = b
    hidden = min(hidden, union)
    return hidden / total if total else 0.0


def auto_fc_layers(times: LayerTimes, global_batch: int) -> list[int]:
    """--fc-replicate auto: layers where global_batch x (n_in + n_out) < n_in x n_out."""
    return [i for i, (a, b) in times.fc_shape.items() if global_batch * (a + b) < a * b]


def scaling_table(times: LayerTimes, net: AlphaBeta, ranks, schedules, bucket_bytes=4 << 20,
                  fc_layers=None, global_batch: int | None = None, flops_per_s: float = 1e11) -> list[dict]:
    """Step time and speedup over one rank for each P; weak scaling unless global_batch is
    given (then strong scaling: the per-rank batch is global_batch / P). ``fc_layers`` None
    applies the auto rule at each P's global batch."""
    rows = []
    base = None
    for p in ranks:
        t = times if global_batch is None else times.scaled(max(global_batch // p, 1))
        gb = global_batch or times.batch * p
        fc = auto_fc_layers(t, gb) if fc_layers is None else fc_layers
        for s in schedules:
            r = simulate(t, p, net, s, bucket_bytes, fc, gb, flops_per_s)
            if p == ranks[0] and s == schedules[0]:
                base = (r["step_s"], p, gb)
            # speedup = throughput (images/s) relative to the first row
            speedup = (gb / r["step_s"]) / (base[2] / base[0])
            rows.append({"ranks": p, "schedule": s, "per_rank_batch": t.batch, "global_batch": gb,
                         "fc_layers": fc if s == "overlap-fc" else [],
                         "step_ms": r["step_s"] * 1e3, "compute_ms": r["compute_s"] * 1e3,
                         "comm_ms": r["comm_s"] * 1e3, "exposed_ms": r["exposed_s"] * 1e3,
                         "speedup": speedup})
    return rows
