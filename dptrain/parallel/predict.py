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

from ..comm.emulated import AlphaBeta
from . import schedules as registered
from .step_model import LayerTimes, buckets_of  # noqa: F401  (where callers find them)


def simulate(times: LayerTimes, p: int, net: AlphaBeta, schedule: str, bucket_bytes: int = 4 << 20,
             fc_layers=(), global_batch: int | None = None, flops_per_s: float = 1e11,
             itemsize: int = 4, groups=None, chunk_bytes: int | None = None) -> dict:
    """Steady-state step time (seconds) and its parts for the schedule named ``schedule`` on
    p ranks (step_model.simulate with the schedule's traits); ``chunk_bytes``: the priority
    engine's chunks (None: one FIFO link)."""
    return registered.get(schedule).simulate(
        times, p, net, bucket_bytes=bucket_bytes, fc_layers=fc_layers, global_batch=global_batch,
        flops_per_s=flops_per_s, itemsize=itemsize, groups=groups, chunk_bytes=chunk_bytes)


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
                         "fc_layers": fc if registered.get(s).replicates_fc else [],
                         "step_ms": r["step_s"] * 1e3, "compute_ms": r["compute_s"] * 1e3,
                         "comm_ms": r["comm_s"] * 1e3, "exposed_ms": r["exposed_s"] * 1e3,
                         "speedup": speedup})
    return rows
