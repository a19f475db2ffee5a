#!/usr/bin/env python3
"""What the machine itself allows 2 synchronous ranks, before dptrain's own costs.

    python scripts/machine_ceiling.py cores [STEPS ROUNDS]
    mpiexec -n 2 .venv/bin/python scripts/machine_ceiling.py allreduce [VALUES CALLS]
    mpiexec -n 2 .venv/bin/python scripts/machine_ceiling.py split [SHIFTS STEPS ROUNDS]
    mpiexec -n 2 .venv/bin/python scripts/machine_ceiling.py sync-points [SEGMENT_MS STEPS]

``cores`` times the same 1-rank training loop (thesis-cnn, batch 64, one thread, blocking,
no exchange) pinned to each core: alone (the other core idle), then on every core at once.
A synchronous job runs at its slowest rank's pace, so a core that is slower only when all
are busy costs every step.

``allreduce`` times a float32 Allreduce of VALUES values (default: thesis-cnn's gradients,
160490) after a barrier, so no rank waits for another: MPI's, and one written here over an
MPI shared-memory window (copy in, each rank sums its slice over every rank's memory in rank
order, copy out). The two agree within a few percent where the copy between cores, not the
MPI library, bounds the call.

``split`` runs the 2-rank blocking step with synchronised batch norm, ranks pinned to cores
0 and 1, the global batch of 128 split 64/64 and, for each SHIFT (default 2,4), 64-SHIFT on
rank 0 and 64+SHIFT on rank 1; rounds interleaved. It prints each split's wall time per step
against one rank's (batch 64, the other rank idle).

``sync-points`` asks whether a synchronisation point as such costs anything: two ranks, each
on its own core, run steps of five compute segments (float32 GEMMs) with no exchange, with
one tiny Allreduce a step, and with one after every segment, 3 rounds interleaved.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time

import numpy as np


def _train_loop(comm, batch: int, steps: int, global_batch: int, sync_bn: bool) -> float:
    """ms per step of ``steps`` timed blocking steps after 30 untimed ones."""
    from dptrain import models, nn, optim
    from dptrain.parallel import DataParallel
    model = models.get("thesis-cnn", None, seed=0)
    opt, loss = optim.get("adadelta", model, lr=1.0), nn.SoftmaxCrossEntropy()
    dp = DataParallel(model, comm, schedule="blocking", bucket_mb=4.0,
                      global_batch=global_batch, sync_bn=sync_bn)
    rng = np.random.default_rng(1 + comm.rank)
    xs = [rng.random((batch, 1, 28, 28), dtype=np.float32) for _ in range(4)]
    ys = [rng.integers(0, 10, batch) for _ in range(4)]
    warm = 30
    for i in range(warm + steps):
        if i == warm:
            t0 = time.perf_counter()
        dp.train_step(xs[i % 4], ys[i % 4], loss, opt, global_batch=global_batch)
    ms = (time.perf_counter() - t0) / steps * 1e3
    dp.close()
    return ms


def one_core(core: int, steps: int) -> None:
    """Child of ``cores``: the loop pinned to ``core``; prints its ms per step."""
    os.sched_setaffinity(0, {core})
    from dptrain import backend, comm as comms
    backend.set_threads(1)
    print(f"{_train_loop(comms.create('local'), 64, steps, 64, False):.3f}", flush=True)


def cores(steps: int, rounds: int) -> None:
    ids = sorted(os.sched_getaffinity(0))
    me = [sys.executable, os.path.abspath(__file__), "one-core"]

    def run(which: list[int]) -> list[float]:
        procs = [subprocess.Popen(me + [str(c), str(steps)], stdout=subprocess.PIPE, text=True)
                 for c in which]
        return [float(p.communicate()[0]) for p in procs]
    alone = {c: [] for c in ids}
    together = {c: [] for c in ids}
    for _ in range(rounds):
        for c in ids:
            alone[c] += run([c])
        for c, ms in zip(ids, run(ids)):
            together[c].append(ms)
    for c in ids:
        print(f"cpu{c}: alone {statistics.median(alone[c]):.2f} ms a step "
              f"(rounds {', '.join(f'{x:.2f}' for x in alone[c])}); all cores busy "
              f"{statistics.median(together[c]):.2f} "
              f"(rounds {', '.join(f'{x:.2f}' for x in together[c])})")
    slowest = max(statistics.median(together[c]) for c in ids)
    fastest_alone = min(statistics.median(alone[c]) for c in ids)
    print(f"ceiling of a synchronous job (fastest core alone / slowest core with all busy): "
          f"{fastest_alone / slowest:.3f}")


def allreduce(values: int, calls: int) -> None:
    from mpi4py import MPI
    world = MPI.COMM_WORLD
    node = world.Split_type(MPI.COMM_TYPE_SHARED)
    P, r = node.size, node.rank
    win = MPI.Win.Allocate_shared(values * 4, 4, comm=node)
    shared = [np.frombuffer(win.Shared_query(q)[0], dtype=np.float32, count=values)
              for q in range(P)]
    cuts = [q * values // P for q in range(P + 1)]
    lo, hi = cuts[r], cuts[r + 1]

    def window_allreduce(x) -> None:
        shared[r][:] = x
        node.Barrier()                          # every rank's values are in
        acc = shared[0][lo:hi].copy()
        for q in range(1, P):                   # rank order, as every rank's slice is summed
            acc += shared[q][lo:hi]
        node.Barrier()                          # every slice read before any is overwritten
        shared[r][lo:hi] = acc
        node.Barrier()
        for q in range(P):
            x[cuts[q]:cuts[q + 1]] = shared[q][cuts[q]:cuts[q + 1]]
        node.Barrier()                          # read before the next call writes again

    def mpi_allreduce(x) -> None:
        node.Allreduce(MPI.IN_PLACE, x)

    mine = np.random.default_rng(r).random(values, dtype=np.float32)
    expected = mine.copy()
    mpi_allreduce(expected)
    got = mine.copy()
    window_allreduce(got)
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    for name, call in (("MPI", mpi_allreduce), ("shared-memory window", window_allreduce)):
        times = []
        for _ in range(calls):
            x = mine.copy()
            node.Barrier()
            t0 = time.perf_counter()
            call(x)
            times.append(time.perf_counter() - t0)
        slowest = max(node.allgather(statistics.median(times)))
        if r == 0:
            print(f"{name}: {values} float32 values, {P} ranks, {calls} calls after a barrier: "
                  f"median {slowest * 1e6:.1f} us (slowest rank)")
    win.Free()


def split(shifts: list[int], steps: int, rounds: int) -> None:
    from dptrain import backend, comm as comms
    world = comms.default()
    if world.size != 2:
        sys.exit("split: run under mpiexec -n 2")
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[world.rank % len(cpus)]})
    backend.set_threads(1)
    rows = {"1 rank": None, "64/64": 0, **{f"{64 - d}/{64 + d}": d for d in shifts}}
    times = {name: [] for name in rows}
    for _ in range(rounds):
        for name, d in rows.items():
            world.barrier()
            if d is None:                       # rank 0 alone; rank 1 sleeps, not spinning
                ms = np.zeros(1)
                if world.rank == 0:
                    ms[0] = _train_loop(comms.create("local"), 64, steps, 64, False)
                    world.comm.Send(ms, dest=1)
                else:
                    req = world.comm.Irecv(ms, source=0)
                    while not req.Test():
                        time.sleep(0.005)
                times[name].append(float(ms[0]))
                continue
            batch = 64 - d if world.rank == 0 else 64 + d
            ms = _train_loop(world, batch, steps, 128, True)
            times[name].append(max(world.comm.allgather(ms)))
    if world.rank == 0:
        print_rows(times, "1 rank")


def sync_points(segment_ms: float, steps: int) -> None:
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    cpus = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpus[comm.rank % len(cpus)]})
    a = np.random.default_rng(comm.rank).random((256, 256), dtype=np.float32)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < 0.2:
        a @ a
        n += 1
    reps = comm.allreduce(max(1, int(n / 200 * segment_ms)), op=MPI.MIN)
    buf = np.zeros(65, np.float32)

    def run(every_segment: bool, once_a_step: bool) -> float:
        comm.Barrier()
        t0 = time.perf_counter()
        for _ in range(steps):
            for _ in range(5):
                for _ in range(reps):
                    a @ a
                if every_segment:
                    comm.Allreduce(MPI.IN_PLACE, buf)
            if once_a_step and not every_segment:
                comm.Allreduce(MPI.IN_PLACE, buf)
        return comm.allreduce((time.perf_counter() - t0) / steps * 1e3, op=MPI.MAX)
    rows = {"no exchange": (False, False), "1 Allreduce a step": (False, True),
            "1 Allreduce a segment (5 a step)": (True, True)}
    times = {name: [] for name in rows}
    for _ in range(3):                                     # rounds, interleaved
        for name, how in rows.items():
            times[name].append(run(*how))
    if comm.rank == 0:
        print_rows(times, "no exchange")


def print_rows(times: dict[str, list[float]], base: str) -> None:
    """Each row's median ms a step over the rounds, and its efficiency against row ``base``."""
    reference = statistics.median(times[base])
    for name, t in times.items():
        print(f"{name}: {statistics.median(t):.2f} ms a step (rounds "
              f"{', '.join(f'{x:.2f}' for x in t)}), efficiency against {base} "
              f"{reference / statistics.median(t):.3f}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if args[:1] == ["cores"]:
        cores(int(args[1]) if len(args) > 1 else 300, int(args[2]) if len(args) > 2 else 4)
    elif args[:1] == ["one-core"] and len(args) == 3:
        one_core(int(args[1]), int(args[2]))
    elif args[:1] == ["allreduce"]:
        allreduce(int(args[1]) if len(args) > 1 else 160490, int(args[2]) if len(args) > 2 else 400)
    elif args[:1] == ["split"]:
        split([int(d) for d in args[1].split(",")] if len(args) > 1 else [2, 4],
              int(args[2]) if len(args) > 2 else 300, int(args[3]) if len(args) > 3 else 5)
    elif args[:1] == ["sync-points"]:
        sync_points(float(args[1]) if len(args) > 1 else 2.7, int(args[2]) if len(args) > 2 else 300)
    else:
        sys.exit(__doc__)
