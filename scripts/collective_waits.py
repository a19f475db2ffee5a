#!/usr/bin/env python3
"""Where ranks wait for one another: every blocking Allreduce of a training run, timed.

    mpiexec -n 2 .venv/bin/python scripts/collective_waits.py record OUT -- train --model \\
        thesis-cnn --dataset synthetic:1x28x28:51200 --batch-size 128 --threads 1 --sync blocking
    python scripts/collective_waits.py report OUT

``record`` runs ``dptrain ARGS...`` on every rank with the communicator's blocking Allreduce
wrapped: each call's entry and exit (CLOCK_MONOTONIC, the same clock on every rank of one
host) and size go to OUT/rank-R.npy at exit. ``report`` numbers the calls within a step (a
step ends with its largest Allreduce, the gradients' under --sync blocking) and prints, per
position, after the first fifth of the run: the compute before the call on each rank
(median, 90th and 99th percentile), the skew of the ranks' arrival, and the time inside the
call (on average, and the least of the ranks at the median: the collective's own cost; the
rest is waiting for the later rank).

The machine's side of the question (does a synchronisation point as such cost anything
here?) is ``scripts/machine_ceiling.py sync-points``.
"""
from __future__ import annotations

import atexit
import os
import sys
import time

import numpy as np


def record(out: str, argv: list[str]) -> int:
    calls = []
    from dptrain.comm.mpi import MPICommunicator
    allreduce = MPICommunicator.allreduce

    def timed(self, buf):
        t0 = time.monotonic_ns()
        allreduce(self, buf)
        calls.append((t0, time.monotonic_ns(), buf.size))
    MPICommunicator.allreduce = timed
    rank = os.environ.get("PMI_RANK", os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    os.makedirs(out, exist_ok=True)
    atexit.register(lambda: np.save(os.path.join(out, f"rank-{rank}.npy"),
                                    np.array(calls, dtype=np.int64).reshape(-1, 3)))
    from dptrain.cli import main
    return main(argv)


def positions(sizes: np.ndarray) -> np.ndarray:
    """Each call's place within its step: a step ends with its largest Allreduce."""
    pos, k, big = np.zeros(len(sizes), int), 0, sizes.max()
    for i, size in enumerate(sizes):
        pos[i] = k
        k = 0 if size == big else k + 1
    return pos


def report(out: str) -> None:
    ranks = [np.load(os.path.join(out, f)) for f in sorted(os.listdir(out)) if f.endswith(".npy")]
    n = min(len(r) for r in ranks)
    ranks = [r[:n] for r in ranks]
    if any((r[:, 2] != ranks[0][:, 2]).any() for r in ranks):
        sys.exit("the ranks' Allreduce sizes differ call by call: not one run's records")
    pos = positions(ranks[0][:, 2])
    enter = np.stack([r[:, 0] for r in ranks]) / 1e3          # microseconds
    inside = np.stack([r[:, 1] - r[:, 0] for r in ranks]) / 1e3
    before = np.stack([np.r_[0, (r[1:, 0] - r[:-1, 1]) / 1e3] for r in ranks])
    steady = np.arange(n) >= n // 5
    print(f"{len(ranks)} ranks, {n} Allreduce calls, {int((pos == 0)[steady].sum())} steps "
          "after the first fifth; microseconds")
    print("| call | values | compute before, median / p90 / p99 (each rank) | arrival skew, "
          "median / mean | inside the call, mean / least at the median | waiting, mean |")
    print("|---|---|---|---|---|---|")
    waiting = 0.0
    for p in range(pos.max() + 1):
        m = (pos == p) & steady
        if m.sum() < 10:
            continue
        compute = ", ".join(f"{np.median(b[m]):.0f} / {np.percentile(b[m], 90):.0f} / "
                            f"{np.percentile(b[m], 99):.0f}" for b in before)
        skew = enter[:, m].max(axis=0) - enter[:, m].min(axis=0)
        own = np.median(inside[:, m].min(axis=0))
        wait = inside[:, m].mean() - own
        waiting += wait
        print(f"| {p} | {ranks[0][m, 2][0]} | {compute} | {np.median(skew):.0f} / "
              f"{skew.mean():.0f} | {inside[:, m].mean():.0f} / {own:.0f} | {wait:.0f} |")
    print(f"waiting in all, per step and rank: {waiting / 1e3:.2f} ms")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["record"] and len(args) >= 3 and args[2] == "--":
        sys.exit(record(args[1], args[3:]))
    if args[:1] == ["report"] and len(args) == 2:
        report(args[1])
    else:
        sys.exit(__doc__)
