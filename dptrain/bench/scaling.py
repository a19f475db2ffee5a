"""``dptrain bench --ranks 1,2``: weak-scaling efficiency and schedules, side by side.

Each configuration is a separate ``LAUNCHER -n P`` run of bench/dp_worker.py (the bench's
own mpiexec, or the user's --launcher/--hostfile for P > 1, bench/launcher.py); rounds
alternate through all configurations so that machine drift hits them alike, and the
report takes medians over rounds. Efficiency = T(1 rank) / T(P ranks) at a fixed batch
per rank; hidden = 1 - (time waited for communication) / (communication time).
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile

from ..errors import UsageError
from ..parallel import PROGRESS_MODES, SCHEDULES, schedules as registered
from .shared import emit_json


def _launchers(args):
    """(this host's mpiexec, the launcher of multi-rank rows): the user's, else the same."""
    from .launcher import local_launcher, parse_launcher
    user = parse_launcher(getattr(args, "launcher", None), getattr(args, "hostfile", None))
    local = local_launcher()
    return local, user or local


def _parse(args):
    try:
        ranks = sorted({int(r) for r in args.ranks.split(",")})
    except ValueError:
        raise UsageError(f"--ranks {args.ranks!r}: expected a comma list of rank counts") from None
    if not ranks or ranks[0] < 1:
        raise UsageError(f"--ranks {args.ranks!r}: rank counts must be positive")
    schedules = []
    for item in args.schedules.split(","):
        item, _, mb = item.strip().partition("@")
        sync, _, progress = item.partition(":")
        if sync not in tuple(SCHEDULES) + ("independent", "auto") \
                or progress not in ("",) + tuple(PROGRESS_MODES):
            raise UsageError(f"--schedules: {item!r} is not blocking, overlap[:thread|poll], "
                             "overlap-fc[:thread|poll], auto or independent")
        try:
            mb = float(mb) if mb else None
        except ValueError:
            raise UsageError(f"--schedules: {item}@{mb}: the bucket cap after @ is in MB") from None
        if mb is not None and (mb <= 0 or sync in ("auto", "independent")):
            raise UsageError(f"--schedules: {item}@{mb}: a positive cap, for a hand-set schedule")
        schedules.append((sync, progress or "auto", mb))
    return ranks, schedules


def _run(launchers, n, sync, progress, args, model=None, net=None, bucket_mb=None,
         reduction: str = "auto") -> dict:
    # one rank on this host; several through the launcher (the user's, across hosts)
    launcher = launchers[0] if n == 1 else launchers[1]
    # bind ranks to cores as launch/mpirun.sh does, when they fit (hydra's syntax)
    bind = n * args.threads <= (os.cpu_count() or 1) and args.bind
    # auto: the defaults of `dptrain train` (both planned), timed once the plan is in force
    from ..parallel.autotune import WARMUP_STEPS
    bucket = "auto" if sync == "auto" else str(bucket_mb if bucket_mb is not None else args.bucket_mb)
    warmup = max(args.warmup, WARMUP_STEPS + 2) if sync == "auto" else args.warmup
    # rank 0 writes its result to a file in the working directory, which a multi-host run
    # shares: a launcher's own output (srun's, ssh's) may mix lines into the workers' stdout
    fd, result = tempfile.mkstemp(prefix=".dptrain-bench-", suffix=".json", dir=os.getcwd())
    os.close(fd)
    cmd = [*launcher.command(n, bind), sys.executable, "-m", "dptrain.bench.dp_worker",
           "--model", model or args.model, "--batch-per-rank", str(args.batch_size),
           "--threads", str(args.threads), "--sync", sync, "--progress", progress,
           "--bucket-mb", bucket, "--steps", str(args.steps), "--warmup", str(warmup),
           *(["--net-emulate", net] if net else []), "--reduction", reduction,
           *(["--input-shape", args.input_shape] if getattr(args, "input_shape", None) else []),
           "--out", result]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.strip()[-500:]}")
        with open(result) as f:
            text = f.read().strip()
    finally:
        os.unlink(result)
    if not text:
        raise RuntimeError(f"{' '.join(cmd)} wrote no result to {result} (is the working "
                           "directory shared with the hosts of the launcher?)")
    return json.loads(text)


def _torch(n, args) -> dict | None:
    """PyTorch on the same setting: one process, or DistributedDataParallel over gloo."""
    cmd = [sys.executable, "-m", "dptrain.bench.torch_reference", "--model", args.model,
           "--batch", str(args.batch_size), "--threads", str(args.threads),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--ddp", str(n)]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        print(f"dptrain bench: PyTorch reference failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def _reductions(args) -> list[str]:
    """--reductions: how multi-rank rows sum their buckets, one row each (flat,hierarchical
    compares the two in one run; auto: as `dptrain train` would)."""
    names = [r.strip() for r in str(getattr(args, "reductions", "auto") or "auto").split(",")]
    bad = [r for r in names if r not in ("auto", "flat", "hierarchical")]
    if bad or not names:
        raise UsageError(f"--reductions: {bad[0] if bad else ''!r} is not auto, flat or hierarchical")
    return names


def run_scaling_bench(args) -> int:
    from .shared import torch_skip_reason
    ranks, schedules = _parse(args)
    launchers = _launchers(args)
    reductions = _reductions(args)
    configs = [(1, "blocking", "thread", None, "auto")] if 1 in ranks else []
    configs += [(n, s, p, mb, red) for n in ranks if n > 1 for s, p, mb in schedules
                for red in reductions]
    torch_skipped = torch_skip_reason(args, args.model)
    with_torch = torch_skipped is None
    results = {c: [] for c in configs}
    torch_runs = {n: [] for n in ranks} if with_torch else {}
    for _ in range(args.rounds):
        for n, sync, progress, mb, red in configs:
            results[(n, sync, progress, mb, red)].append(
                _run(launchers, n, sync, progress, args, bucket_mb=mb, reduction=red))
        for n in torch_runs:
            res = _torch(n, args)
            if res:
                torch_runs[n].append(res["median_step_s"])
    base = statistics.median(r["step_s"] for r in results[configs[0]]) if 1 in ranks else None
    from .node_rows import StepPredictor, node_fields, node_lines
    predictor = StepPredictor(args)
    rows = []
    for (n, sync, progress, mb, red), runs in results.items():
        step = statistics.median(r["step_s"] for r in runs)
        label = sync if red == "auto" else f"{sync}+{red}"
        row = {"ranks": n, "sync": label if n > 1 else "single", "progress": progress if n > 1 else "",
               "reduction": red if n > 1 else "",
               "bucket_mb": "auto" if sync == "auto" else mb,       # None: --bucket-mb
               "step_ms": step * 1e3, "images_per_s": n * args.batch_size / step,
               "comm_ms": statistics.median(r["comm_s"] / max(r["steps"], 1) for r in runs) * 1e3,
               "exposed_ms": statistics.median(r["exposed_s"] / max(r["steps"], 1) for r in runs) * 1e3,
               "hidden_fraction": statistics.median(r["hidden_fraction"] for r in runs),
               "bytes_per_step": runs[-1]["bytes_per_step"],
               "predicted_step_ms": predictor.step_ms(n, sync, mb, runs), **node_fields(runs)}
        if sync == "auto":
            row["auto"] = runs[-1].get("auto", {})
        if base:
            row["efficiency"] = base / step
        rows.append(row)
    torch_rows = []
    torch_base = statistics.median(torch_runs[1]) if torch_runs.get(1) else None
    for n, times in torch_runs.items():
        if times:
            step = statistics.median(times)
            row = {"ranks": n, "step_ms": step * 1e3, "images_per_s": n * args.batch_size / step}
            if torch_base:
                row["efficiency"] = torch_base / step
            torch_rows.append(row)
    report = {"model": args.model, "batch_per_rank": args.batch_size, "threads": args.threads,
              "rounds": args.rounds, "steps": args.steps, "launcher": launchers[1].argv,
              "rows": rows, "torch": torch_rows,
              "torch_skipped": torch_skipped}
    if emit_json(report, args):
        return 0
    print(f"dptrain bench: {args.model}, weak scaling, batch {args.batch_size} per rank, "
          f"{args.threads} thread(s) per rank, {args.rounds} rounds x {args.steps} steps (medians)")
    print(f"  launcher of multi-rank rows: {' '.join(launchers[1].argv)} -n P")
    print(f"  {'ranks':>5} {'schedule':<16} {'step ms':>8} {'pred.':>8} {'img/s':>7} {'effic.':>6} "
          f"{'comm ms':>8} {'exposed':>8} {'hidden':>6} {'MB/step':>8}")
    for r in rows:
        sched = _label(r)
        eff = f"{r['efficiency']:.3f}" if "efficiency" in r else "-"
        pred = f"{r['predicted_step_ms']:.2f}" if r["predicted_step_ms"] is not None else "-"
        print(f"  {r['ranks']:>5} {sched:<16} {r['step_ms']:>8.2f} {pred:>8} {r['images_per_s']:>7.0f} "
              f"{eff:>6} {r['comm_ms']:>8.2f} {r['exposed_ms']:>8.2f} {r['hidden_fraction']:>6.2f} "
              f"{r['bytes_per_step'] / 2**20:>8.2f}")
        for line in node_lines(r):
            print(line)
    for r in torch_rows:
        name = "PyTorch" if r["ranks"] == 1 else "PyTorch DDP gloo"
        eff = f"{r['efficiency']:.3f}" if "efficiency" in r else "-"
        print(f"  {r['ranks']:>5} {name:<16} {r['step_ms']:>8.2f} {r['images_per_s']:>7.0f} {eff:>6}")
    if torch_skipped:
        print(f"  PyTorch and PyTorch DDP rows skipped: {torch_skipped}")
    return 0


def run_overlap_bench(args) -> int:
    """Models x emulated networks x schedules on P ranks: how much communication is hidden.

    compute = the 'independent' step (same ranks, no exchange); exposed = step - compute;
    hidden = 1 - exposed / (blocking's exposed). Two bounds from per-layer times measured
    here and the network model (parallel/predict.py): 'sim.' simulates the schedule with one
    first-in-first-out channel, as dptrain runs it; 'dep.' is what the layer dependencies
    allow in any order (each bucket hides at most the compute between its gradients being
    final and its first layer being needed in the next forward pass).
    """
    from ..comm.emulated import AlphaBeta, parse_spec
    from ..parallel.predict import auto_fc_layers, dependency_bound, simulate
    from .node_rows import node_fields, node_lines
    from .predict import measure_layer_times
    from .. import backend, models as zoo
    ranks, schedules = _parse(args)
    p = max(ranks)
    schedules = [("independent", "thread", None)] + [s for s in schedules if s[0] != "independent"]
    launchers = _launchers(args)
    nets = args.net_emulate or [None]
    results = {}
    for _ in range(args.rounds):
        for model in args.models.split(","):
            for net in nets:
                for sync, progress, mb in schedules:
                    key = (model, net, sync, progress, mb)
                    results.setdefault(key, []).append(_run(launchers, p, sync, progress, args, model,
                                                            net, bucket_mb=mb))
    backend.set_threads(args.threads)
    rows = []
    for model in args.models.split(","):
        times = measure_layer_times(zoo.get(model), args.batch_size, steps=3)
        gb = args.batch_size * p
        for net in nets:
            spec = parse_spec(net) if net else None
            ab = AlphaBeta(spec["latency_s"], spec["bandwidth_bps"]) if spec else None
            step = {k[2:]: statistics.median(r["step_s"] for r in v) for k, v in results.items()
                    if k[:2] == (model, net)}
            compute = step[("independent", "thread", None)]
            blocking_exposed = next((t for (sync, *_), t in step.items() if sync == "blocking"),
                                    compute) - compute
            hand = [t for (sync, *_), t in step.items() if sync not in ("independent", "auto")]
            for (sync, progress, mb), t in step.items():
                runs = results[(model, net, sync, progress, mb)]
                cap = int((mb or args.bucket_mb) * 2**20)
                exposed = t - compute
                overlapping = sync in SCHEDULES and registered.get(sync).overlaps
                row = {"model": model, "net": net or "shared memory", "ranks": p, "sync": sync,
                       "progress": progress if overlapping else "",
                       "bucket_mb": "auto" if sync == "auto" else mb,       # None: --bucket-mb
                       "step_ms": t * 1e3, "images_per_s": p * args.batch_size / t,
                       "compute_ms": compute * 1e3, "exposed_ms": exposed * 1e3,
                       "comm_ms": statistics.median(r["comm_s"] / max(r["steps"], 1) for r in runs) * 1e3,
                       "bytes_per_step": runs[-1]["bytes_per_step"], **node_fields(runs)}
                if sync == "auto":
                    row["auto"] = runs[-1].get("auto", {})
                    if hand:
                        row["step_vs_best_hand_set"] = t / min(hand)
                if sync not in ("independent", "blocking") and blocking_exposed > 0:
                    row["hidden_fraction"] = 1 - exposed / blocking_exposed
                    # of what perfect overlap could hide: the smaller of exposed and compute
                    row["hidden_of_hideable"] = (blocking_exposed - exposed) / min(blocking_exposed, compute)
                    if ab and overlapping:
                        fc = auto_fc_layers(times, gb)
                        b, o = (simulate(times, p, ab, s, cap, fc, gb) for s in ("blocking", sync))
                        row["bound_hidden_fraction"] = 1 - o["exposed_s"] / b["exposed_s"]
                    if ab and overlapping and not registered.get(sync).replicates_fc:
                        row["dependency_bound"] = dependency_bound(times, p, ab, cap)
                rows.append(row)
    report = {"batch_per_rank": args.batch_size, "threads": args.threads, "rounds": args.rounds,
              "steps": args.steps, "rows": rows}
    if emit_json(report, args):
        return 0
    print(f"dptrain bench: overlap on {p} ranks, batch {args.batch_size} per rank, {args.threads} "
          f"thread(s), {args.rounds} rounds x {args.steps} steps (medians); compute = independent step")
    print(f"  {'model':<11} {'network':<14} {'schedule':<16} {'step ms':>8} {'img/s':>7} {'exposed':>8} "
          f"{'hidden':>7} {'sim.':>6} {'dep.':>6} {'MB sent':>8}")
    for r in rows:
        sched = _label(r)
        hidden = f"{r['hidden_fraction']:.2f}" if "hidden_fraction" in r else "-"
        bound = f"{r['bound_hidden_fraction']:.2f}" if "bound_hidden_fraction" in r else "-"
        dep = f"{r['dependency_bound']:.2f}" if "dependency_bound" in r else "-"
        print(f"  {r['model']:<11} {r['net']:<14} {sched:<16} {r['step_ms']:>8.1f} {r['images_per_s']:>7.0f} "
              f"{r['exposed_ms']:>8.1f} {hidden:>7} {bound:>6} {dep:>6} {r['bytes_per_step'] / 2**20:>8.3f}"
              + (f"  {r['step_vs_best_hand_set']:.3f} x the best hand-set step"
                 if "step_vs_best_hand_set" in r else ""))
        for line in node_lines(r):
            print(line)
    return 0


def _label(row: dict) -> str:
    """blocking, overlap:poll@0.05, auto=overlap-fc/3 (what auto chose, and its bucket count)."""
    if row["sync"] == "auto":
        a = row.get("auto") or {}
        return "auto" + (f"={a['sync']}/{len(a['buckets'])}" if "sync" in a else "")
    text = row["sync"] + (f":{row['progress']}" if row.get("progress") and row["sync"] != "single"
                          and row["sync"] != "blocking" else "")
    return text + (f"@{row['bucket_mb']:g}" if isinstance(row.get("bucket_mb"), float) else "")
