"""One data-parallel benchmark run, started by ``dptrain bench --ranks`` under mpiexec.

Every rank trains the same model on random data (batch per rank fixed: weak scaling);
rank 0 prints one JSON line: the slowest rank's median step time and the overlap
statistics of DataParallel (communication time, the part waited for, bytes per step), and
its wall time per step differenced
between the end of the warm-up and the end of the timed steps (bench/weak_scaling.py), and
with ``--out PATH`` also writes it there (ranks started by a launcher on other hosts: the
bench reads the file from the shared working directory, not the launcher's output). On P > 1
ranks it adds the node layout, the measured links and each node's interface byte counters
over the timed steps (bench/node_links.py).
"""
import argparse
import json
import os
import statistics
import time

import numpy as np

from .. import backend, comm as comms, models, nn, optim
from ..parallel import DataParallel
from .weak_scaling import differenced_step_s


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="thesis-cnn")
    p.add_argument("--batch-per-rank", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--sync", default="overlap")
    p.add_argument("--progress", default="auto")
    p.add_argument("--bucket-mb", default="4.0", help="MB, or auto")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--net-emulate", help="alpha-beta network emulation, e.g. bw=100Mbit")
    p.add_argument("--fc-replicate", default="auto")
    p.add_argument("--input-shape", help="CxHxW, for a model of the user's own (FILE.py:NAME)")
    p.add_argument("--out", help="rank 0 also writes its JSON line to this file")
    p.add_argument("--reduction", default="auto", help="auto, flat or hierarchical")
    p.add_argument("--sync-bn", default="auto", choices=("auto", "on", "off"),
                   help="batch-norm statistics over all ranks; auto: as train (on with BatchNorm)")
    a = p.parse_args()
    backend.set_threads(a.threads)
    world = comms.default()
    if a.sync == "auto" and a.bucket_mb == "auto" and world.size > 1:
        from ..parallel import plan_check       # time the plan auto keeps, after its check
        a.warmup += plan_check.CHECK_AFTER + 2 * plan_check.WINDOW
    if a.net_emulate and world.size > 1:
        world = comms.create("emulated", inner=world, spec=a.net_emulate)
    elif world.size > 1:                  # ranks sharing nodes: as `dptrain train` reduces
        from ..comm.hierarchical import over
        world, _ = over(world, a.reduction)
    # "independent": the same ranks, no gradient exchange: what the machine allows P
    # processes at once, the ceiling that communication is measured against
    comm = comms.create("local") if a.sync == "independent" else world
    shape = tuple(int(d) for d in a.input_shape.split("x")) if a.input_shape else None
    model = models.get(a.model, shape, seed=0)
    opt = optim.get("adadelta", model, lr=1.0)
    loss = nn.SoftmaxCrossEntropy()
    sync = "blocking" if a.sync == "independent" else a.sync
    bucket_mb = a.bucket_mb if a.bucket_mb == "auto" else float(a.bucket_mb)
    sync_bn = a.sync_bn == "on" or (a.sync_bn == "auto" and any(
        isinstance(layer, nn.BatchNorm) for layer in model.layers))
    dp = DataParallel(model, comm, schedule=sync, bucket_mb=bucket_mb, progress=a.progress,
                      fc_replicate=a.fc_replicate, global_batch=a.batch_per_rank * world.size,
                      sync_bn=sync_bn)
    dp.broadcast_parameters()
    rng = np.random.default_rng(1 + world.rank)
    shape = (a.batch_per_rank,) + model.input_shape
    xs = [rng.random(shape, dtype=np.float32) for _ in range(4)]
    ys = [rng.integers(0, 10, a.batch_per_rank) for _ in range(4)]
    layout = links = before = None
    if world.size > 1:                           # before the timed steps: the probe's bytes stay out
        from .node_links import NodeLayout, read_counters
        layout = NodeLayout()
        links = layout.probe()
    world.barrier()
    times = []
    last = started = time.perf_counter()
    for i in range(a.warmup + a.steps):
        if i == a.warmup:
            dp.stats.__init__()                  # count the timed steps only
            before = read_counters() if layout is not None and layout.is_leader else None
            started = time.perf_counter()        # the short run ends here (weak_scaling.py)
        dp.train_step(xs[i % 4], ys[i % 4], loss, opt, global_batch=a.batch_per_rank * world.size)
        now = time.perf_counter()                # step to step: deferred work lands in the next
        if i >= a.warmup:
            times.append(now - last)
        last = now
    # read before close(): it completes the last step's reductions, and the window would hold
    # them besides the ones the first timed step completed for the last warm-up step (overlap
    # showed 4/3 of blocking's bytes over 3 steps); this way each end carries one step's
    wall = differenced_step_s(started, time.perf_counter(), a.warmup, a.warmup + a.steps)
    after = read_counters() if layout is not None and layout.is_leader else None
    dp.close()
    gathered = world.allgather(np.array([statistics.median(times), wall]))
    medians, walls = gathered[:, 0], gathered[:, 1]
    stats = dp.stats.as_dict()
    if dp.auto is not None:                      # what auto chose, and from what
        stats["auto"] = dp.auto.summary()
    topology = layout.report(links, before, after, a.steps) if layout is not None else None
    if layout is not None:
        layout.free()
    if world.rank == 0:
        line = json.dumps({"ranks": world.size, "sync": a.sync, "progress": a.progress,
                           "sync_bn": sync_bn,
                           "step_s": float(medians.max()), "rank_step_s": medians.tolist(),
                           "wall_step_s": float(walls.max()), "rank_wall_step_s": walls.tolist(),
                           **stats, **({"topology": topology} if topology else {})})
        if a.out:
            # the bench made the file and removes it when cut: never create it again (a rank
            # that outlived a cut bench would leave a stray file in the working directory)
            try:
                fd = os.open(a.out, os.O_WRONLY | os.O_TRUNC)
            except FileNotFoundError:
                return
            with os.fdopen(fd, "w") as f:
                f.write(line + "\n")
        print(line, flush=True)


if __name__ == "__main__":
    main()
