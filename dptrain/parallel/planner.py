"""Bucket boundaries and schedule from measured layer times and the link (``auto``).

Buckets are contiguous runs of parametrised layers in reverse layer order (the order backprop
finishes them). On one first-in-first-out link the reductions complete in the order they were
posted, and the next forward pass needs them in the opposite order: the bucket holding the
first layers is posted last and needed first. So with the overlap schedule the step waits for
exactly one thing, the completion of the last reduction, and the best cut is the one that
finishes the link's work earliest. With post times fixed by backprop (bucket k is posted when
its lowest layer's backward ends, at d_k) and costs c(bytes) = 2 (P-1) alpha + 2 (P-1)/P bytes
beta, the link is free after bucket k at

    f(k) = min over the previous cut j of  max(f(j), d_k) + c(bytes of layers j+1 .. k)

and since that is increasing in f(j), the earliest finish of every prefix is optimal for the
whole (dynamic programming, O(L^2) for L layers). Few buckets pay alpha few times; many start
early: "the last k layers first" of Lee et al. is the case of one late, large bucket.
FC layers replicated by overlap-fc post their error gathers at fixed times in between; the
recurrence folds them in. The candidates (the DP's cut, one bucket per layer, one bucket) are
then replayed by the simulator (predict.simulate), which also models the forward pass, the
deferred updates and the activation gathers; the shortest predicted step wins.

The schedule: the simplest of blocking, overlap, overlap-fc unless a more involved one is
predicted faster by more than ``margin`` of the step (the simulator knows neither the cost of
polling nor the competition of a communication thread for the cores).

The progress engine (with --comm-progress auto): a FIFO one (poll), or the priority engine
(parallel/priority.py), whose chunks of the first layers' buckets overtake a large bucket
posted earlier, so the next forward pass can start while the rest is still on the wire. The
simulator replays it (link_model.py: chunks, preemption at chunk boundaries, the agreement's
lag and cost) for each cut and each chunk size in ``chunk_sizes`` (from alpha and beta); it
is taken when predicted faster than the best FIFO plan of the schedule by more than
``margin`` (it costs a thread, and the simulator knows neither that nor the per-chunk cost).
It is not offered to overlap-fc beside a FIFO engine: there the step is bound by compute, the engine's thread
competes with backprop for the rank's core, and it measured slower than poll on thesis-cnn at
100 Mbit/s (46.0 against 40.3 ms; docs/performance.md) although predicted faster.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import math

from ..comm.emulated import AlphaBeta
from . import engine as engines
from . import priority as _priority  # noqa: F401  (registers the chunked engine replayed here)
from . import schedules as registered
from .predict import LayerTimes, buckets_of, simulate

ORDER = registered.Names()      # the registered schedules, simplest first (registration order)
MARGIN = 0.03          # a more involved schedule must be predicted this much faster


@dataclass
class Plan:
    schedule: str
    groups: list[list[int]]                 # layer indices per bucket, in posting order
    predicted: dict = field(default_factory=dict)   # schedule -> predicted step and exposed (s)
    # the measured lines that chose each bucket's reduction (comm/reduction_choice.py), kept
    # so that a resumed run sums every bucket as before: [flat alpha, bps, hier alpha, bps]
    reduction: list[float] | None = None
    # the progress engine chosen (None: --comm-progress's own choice) and its chunk size
    progress: str | None = None
    chunk_bytes: int | None = None

    def as_dict(self) -> dict:
        out = {"schedule": self.schedule, "groups": [list(map(int, g)) for g in self.groups],
               "predicted": {s: {k: float(v) for k, v in r.items()} for s, r in self.predicted.items()}}
        if self.reduction is not None:
            out["reduction"] = [float(x) for x in self.reduction]
        if self.progress is not None:
            out["progress"] = self.progress
        if self.chunk_bytes is not None:
            out["chunk_bytes"] = int(self.chunk_bytes)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        reduction = d.get("reduction")
        if reduction is not None:
            reduction = [float(x) for x in reduction]
            if len(reduction) != 4 or not all(0 < x < float("inf") for x in reduction[1::2]) \
                    or not all(0 <= x < float("inf") for x in reduction[::2]):
                raise ValueError(f"reduction lines {reduction}: four finite numbers expected")
        progress, chunk = d.get("progress"), d.get("chunk_bytes")
        if progress is not None and str(progress) not in engines.names():
            raise ValueError(f"progress engine {progress!r}: not one of {', '.join(engines.names())}")
        if chunk is not None and not 0 < int(chunk) < 2**40:
            raise ValueError(f"chunk size {chunk!r}: a positive number of bytes expected")
        return cls(str(d["schedule"]), [[int(i) for i in g] for g in d["groups"]],
                   {str(s): {str(k): float(v) for k, v in r.items()}
                    for s, r in dict(d.get("predicted", {})).items()}, reduction,
                   None if progress is None else str(progress), None if chunk is None else int(chunk))


def chunk_sizes(net: AlphaBeta, p: int) -> list[int]:
    """Chunk sizes worth replaying for the priority engine: the power of two at which a
    chunk's latency is about 1/16 of its transfer (smaller chunks preempt sooner and pay
    alpha more often), a quarter and four times that, within 16 KiB .. 4 MiB."""
    if p <= 1:
        return []
    latency, per_byte = 2 * (p - 1) * net.alpha, 2 * (p - 1) / p * net.beta
    base = 2 ** round(math.log2(max(16 * latency / per_byte, 1.0)))
    return sorted({min(max(int(base * f), 16 << 10), 4 << 20) for f in (0.25, 1, 4)})


def bucket_layers(times: LayerTimes, exclude=()) -> list[int]:
    """Parametrised layers that go into buckets, in reverse order."""
    return [i for i in range(len(times.param_bytes) - 1, -1, -1)
            if times.param_bytes[i] and i not in exclude]


def is_valid_cut(groups, layers: list[int]) -> bool:
    """``groups`` split ``layers`` (reverse order) into contiguous non-empty runs. No layers
    left to reduce (overlap-fc replicating every parametrised layer) is split by no bucket."""
    return groups is not None and all(groups) and [i for g in groups for i in g] == layers


def _gather_costs(times, p, net, fc_layers, global_batch, itemsize):
    rows = -(-global_batch // p)
    return {i: (net.allgather(p, p * rows * times.fc_shape[i][0] * itemsize),
                net.allgather(p, p * rows * times.fc_shape[i][1] * itemsize)) for i in fc_layers}


def optimal_groups(times: LayerTimes, p: int, net: AlphaBeta, fc_layers=(), global_batch=None,
                   itemsize: int = 4) -> list[list[int]]:
    """The cut that frees the link earliest (module docstring), FC gathers folded in."""
    fc_layers = [i for i in fc_layers if i in times.fc_shape]
    layers = bucket_layers(times, exclude=set(fc_layers))
    if not layers:
        return []
    gathers = _gather_costs(times, p, net, fc_layers, global_batch or times.batch * p, itemsize)
    n = len(times.fwd)
    # time origin: the start of backprop; the forward pass before it posts the input gathers
    channel, t = 0.0, -sum(times.fwd)
    for i in range(n):
        t += times.fwd[i]
        if i in gathers:
            channel = max(channel, t) + gathers[i][0]
    done, t = {}, 0.0
    for i in range(n - 1, -1, -1):
        t += times.bwd[i] / 2 if i in gathers else times.bwd[i]
        done[i] = t

    def fold(free: float, j: int, k: int) -> float:
        """Link free time after the error gathers posted between layers[j-1] and layers[k],
        then the bucket layers[j..k]."""
        upper = layers[j - 1] if j > 0 else n
        for g in sorted((i for i in gathers if layers[k] < i < upper), reverse=True):
            free = max(free, done[g]) + gathers[g][1]
        size = sum(times.param_bytes[i] for i in layers[j:k + 1])
        return max(free, done[layers[k]]) + net.allreduce(p, size)

    best = [(channel, None)] + [(float("inf"), None)] * len(layers)   # best[k]: cut after k-1
    for k in range(len(layers)):
        for j in range(k + 1):
            free = fold(best[j][0], j, k)
            if free < best[k + 1][0]:
                best[k + 1] = (free, j)
    groups, k = [], len(layers)
    while k > 0:
        j = best[k][1]
        groups.append(layers[j:k])
        k = j
    return groups[::-1]


def choose(times: LayerTimes, p: int, net: AlphaBeta, schedules=ORDER, fc_layers=(),
           global_batch: int | None = None, itemsize: int = 4, bucket_bytes: int | None = None,
           margin: float = MARGIN, progress=(None,), chunks=None) -> Plan:
    """The plan for ``schedules`` (one: that schedule's best buckets). ``bucket_bytes`` fixes
    the buckets by a byte cap instead of planning them. ``progress``: the engines to choose
    from (None: the one --comm-progress gives, FIFO); a chunked one (priority) is replayed
    with each of ``chunks`` (default: chunk_sizes of the link)."""
    gb = global_batch or times.batch * p
    fc_layers = [i for i in fc_layers if i in times.fc_shape]
    predicted, chosen_of = {}, {}
    for s in schedules:
        kind = registered.get(s)
        if kind.replicates_fc and not fc_layers and len(schedules) > 1:
            continue                                       # nothing to replicate: overlap
        exclude = set(fc_layers) if kind.replicates_fc else set()
        layers = bucket_layers(times, exclude)
        if bucket_bytes is not None:
            candidates = [buckets_of(times, bucket_bytes, exclude)]
        elif not kind.overlaps or p == 1:
            candidates = [[layers]] if layers else [[]]
        else:
            candidates = [optimal_groups(times, p, net, fc_layers if kind.replicates_fc else (),
                                         gb, itemsize), [[i] for i in layers], [layers]]
        ways = [(None, None)]                               # how the link is driven
        if kind.overlaps and p > 1:
            ways = [(e, c) for e in progress
                    for c in ((chunks or chunk_sizes(net, p)) if engines.chunked(e) else (None,))]
            if kind.replicates_fc and any(c is None for _, c in ways):
                ways = [w for w in ways if w[1] is None]    # not offered (module docstring)
        best = {}                                           # FIFO or chunked -> (result, plan)
        for groups in candidates:
            groups = [g for g in groups if g]
            for engine, chunk in ways:
                r = simulate(times, p, net, s, fc_layers=fc_layers, global_batch=gb,
                             itemsize=itemsize, groups=groups, chunk_bytes=chunk)
                key = chunk is not None
                if key not in best or r["step_s"] < best[key][0]["step_s"]:
                    best[key] = (r, Plan(s, groups, progress=engine, chunk_bytes=chunk))
        pick = best.get(False) or best[True]
        if True in best and best[True][0]["step_s"] < pick[0]["step_s"] * (1 - margin):
            pick = best[True]
        predicted[s] = {"step_s": pick[0]["step_s"], "exposed_s": pick[0]["exposed_s"]}
        chosen_of[s] = pick[1]
    chosen = None
    for s in ORDER:
        if s in predicted and (chosen is None or predicted[s]["step_s"]
                               < predicted[chosen]["step_s"] * (1 - margin)):
            chosen = s
    plan = chosen_of[chosen]
    plan.predicted = predicted
    return plan
