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
from ..parallel import PROGRESS_MODES, SCHEDULES
from .. import interrupts
from .watched_run import run_watched


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
    result = None
    try:
        # a cut between making the file and the run's end must still remove it
        with interrupts.deferred():
            fd, result = tempfile.mkstemp(prefix=".dptrain-bench-", suffix=".json", dir=os.getcwd())
            os.close(fd)
        text = _run_worker(launcher, n, bind, sync, progress, args, model, net, bucket, warmup,
                           reduction, result)
    finally:
        if result is not None:
            os.unlink(result)
    if not text:
        raise RuntimeError(f"the bench worker wrote no result to {result} (is the working "
                           "directory shared with the hosts of the launcher?)")
    return json.loads(text)


def _run_worker(launcher, n, bind, sync, progress, args, model, net, bucket, warmup, reduction,
                result) -> str:
    """Start the ranks through ``launcher``; the text rank 0 left in ``result``."""
    cmd = [*launcher.command(n, bind), sys.executable, "-m", "dptrain.bench.dp_worker",
           "--model", model or args.model, "--batch-per-rank", str(args.batch_size),
           "--threads", str(args.threads), "--sync", sync, "--progress", progress,
           "--bucket-mb", bucket, "--steps", str(args.steps), "--warmup", str(warmup),
           *(["--net-emulate", net] if net else []), "--reduction", reduction,
           "--sync-bn", getattr(args, "sync_bn", "auto"),
           *(["--input-shape", args.input_shape] if getattr(args, "input_shape", None) else []),
           "--out", result]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OPENBLAS_NUM_THREADS=str(args.threads))
    # in a session of its own, killed as a group when the bench is cut or the run outlives
    # its deadline (a rank left behind never re-creates the removed file: dp_worker.py)
    out = run_watched(cmd, env, deadline_s=600)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.why()[-500:]}")
    with open(result) as f:
        return f.read().strip()


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
    from .node_rows import StepPredictor
    from .shared import torch_skip_reason
    from .stream import BenchStream
    ranks, schedules = _parse(args)
    launchers = _launchers(args)
    reductions = _reductions(args)
    configs = [(1, "blocking", "thread", None, "auto")] if 1 in ranks else []
    configs += [(n, s, p, mb, red) for n in ranks if n > 1 for s, p, mb in schedules
                for red in reductions]
    torch_skipped = torch_skip_reason(args, args.model)
    results = {c: [] for c in configs}
    torch_runs = {n: [] for n in ranks} if torch_skipped is None else {}
    predictor = StepPredictor(args)

    def report() -> dict:
        return {"model": args.model, "batch_per_rank": args.batch_size, "threads": args.threads,
                "rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
                "launcher": launchers[1].argv,
                "rows": _rows(args, configs, results, predictor, 1 in ranks),
                "torch": _torch_rows(args, torch_runs), "torch_skipped": torch_skipped}
    stream = BenchStream(args, args.rounds * (len(configs) + len(torch_runs)), report,
                         lambda rep: _print_scaling(rep, args, launchers))
    with stream.watch():
        for rnd in range(args.rounds):
            for n, sync, progress, mb, red in configs:
                name = _label({"sync": sync if red == "auto" else f"{sync}+{red}",
                               "progress": progress, "bucket_mb": mb}) if n > 1 else "single"
                stream.start(f"round {rnd + 1}, {n} rank(s) {name}")
                run = _run(launchers, n, sync, progress, args, bucket_mb=mb, reduction=red)
                results[(n, sync, progress, mb, red)].append(run)
                stream.finished(f"  round {rnd + 1}/{args.rounds}: {n} rank(s) {name}: step "
                                f"{run['step_s'] * 1e3:.2f} ms, wall {run['wall_step_s'] * 1e3:.2f}"
                                " ms/step")
            for n in torch_runs:
                stream.start(f"round {rnd + 1}, PyTorch {n} rank(s)")
                res = _torch(n, args)
                torch_runs[n].append(res["median_step_s"] if res else None)
                stream.finished(f"  round {rnd + 1}/{args.rounds}: PyTorch{' DDP gloo' if n > 1 else ''} "
                                f"{n} rank(s): " + (f"step {res['median_step_s'] * 1e3:.2f} ms"
                                                    if res else "failed"))
    return stream.close()


def _rows(args, configs, results, predictor, with_base: bool) -> list[dict]:
    """The table's rows from the runs finished so far: medians over rounds, the efficiency of
    the median step, and the differenced wall-time efficiency with its spread over rounds."""
    from .node_rows import node_fields
    from .noise import flag
    from .weak_scaling import paired_efficiencies, spread
    base_runs = results[configs[0]] if with_base and configs else []
    base = statistics.median(r["step_s"] for r in base_runs) if base_runs else None
    base_walls = [r.get("wall_step_s") for r in base_runs]
    rows = []
    for (n, sync, progress, mb, red), runs in results.items():
        if not runs:
            continue
        step = statistics.median(r["step_s"] for r in runs)
        label = sync if red == "auto" else f"{sync}+{red}"
        row = {"ranks": n, "sync": label if n > 1 else "single", "progress": progress if n > 1 else "",
               "reduction": red if n > 1 else "",
               "bucket_mb": "auto" if sync == "auto" else mb,       # None: --bucket-mb
               "step_ms": step * 1e3, "images_per_s": n * args.batch_size / step,
               "wall_step_ms": statistics.median(r["wall_step_s"] for r in runs) * 1e3,
               "comm_ms": statistics.median(r["comm_s"] / max(r["steps"], 1) for r in runs) * 1e3,
               "exposed_ms": statistics.median(r["exposed_s"] / max(r["steps"], 1) for r in runs) * 1e3,
               "hidden_fraction": statistics.median(r["hidden_fraction"] for r in runs),
               "bytes_per_step": runs[-1]["bytes_per_step"],
               "predicted_step_ms": predictor.step_ms(n, sync, mb, runs), **node_fields(runs)}
        if sync == "auto":
            row["auto"] = runs[-1].get("auto", {})
        if base:
            row["efficiency"] = base / step
        wall = spread(paired_efficiencies(base_walls, [r["wall_step_s"] for r in runs]))
        if wall:
            row["wall_efficiency"], row["wall_efficiency_spread"] = wall["median"], wall
        rows.append(flag(row))
    return rows


def _torch_rows(args, torch_runs) -> list[dict]:
    rows = []
    base = [t for t in torch_runs.get(1, []) if t]
    for n, times in torch_runs.items():
        times = [t for t in times if t]
        if times:
            step = statistics.median(times)
            row = {"ranks": n, "step_ms": step * 1e3, "images_per_s": n * args.batch_size / step}
            if base:
                row["efficiency"] = statistics.median(base) / step
            rows.append(row)
    return rows


def _print_scaling(report: dict, args, launchers) -> None:
    from .node_rows import node_lines
    from .noise import cell, notes
    rows, torch_rows = report["rows"], report["torch"]
    print(f"dptrain bench: {args.model}, weak scaling, batch {args.batch_size} per rank, "
          f"{args.threads} thread(s) per rank, {args.rounds} rounds x {args.steps} steps (medians)")
    print(f"  launcher of multi-rank rows: {' '.join(launchers[1].argv)} -n P")
    print(f"  {'ranks':>5} {'schedule':<16} {'step ms':>8} {'pred.':>8} {'img/s':>7} {'effic.':>6} "
          f"{'comm ms':>8} {'exposed':>8} {'hidden':>6} {'MB/step':>8} {'wall ms':>8}  wall effic.")
    for r in rows:
        spread = r.get("wall_efficiency_spread")
        wall_eff = (f"{cell(r, 'wall_efficiency', '.3f')} [{spread['min']:.2f}-{spread['max']:.2f}]"
                    if spread else "-")
        print(f"  {r['ranks']:>5} {_label(r):<16} {r['step_ms']:>8.2f} "
              f"{cell(r, 'predicted_step_ms', '.2f'):>8} {r['images_per_s']:>7.0f} "
              f"{cell(r, 'efficiency', '.3f'):>6} {cell(r, 'comm_ms', '.2f'):>8} "
              f"{cell(r, 'exposed_ms', '.2f'):>8} {cell(r, 'hidden_fraction', '.2f'):>6} "
              f"{r['bytes_per_step'] / 2**20:>8.2f} {r['wall_step_ms']:>8.2f}  {wall_eff}")
        for line in node_lines(r):
            print(line)
    for r in torch_rows:
        name = "PyTorch" if r["ranks"] == 1 else "PyTorch DDP gloo"
        print(f"  {r['ranks']:>5} {name:<16} {r['step_ms']:>8.2f} {'':>8} {r['images_per_s']:>7.0f} "
              f"{cell(r, 'efficiency', '.3f'):>6}")
    if any("wall_efficiency" in r for r in rows):
        print("  wall effic.: 1 rank's wall time per step / the row's, differenced between the end "
              "of the warm-up and the end of the timed steps (start-up and warm-up cancel);\n"
              "  median [min-max] over rounds, paired within each; 'independent' (no exchange) is "
              "the machine's ceiling")
    for line in notes(rows, lambda r: f"{r['ranks']} rank(s) {_label(r)}"):
        print(line)
    if report["torch_skipped"]:
        print(f"  PyTorch and PyTorch DDP rows skipped: {report['torch_skipped']}")


def _label(row: dict) -> str:
    """blocking, overlap:poll@0.05, auto=overlap-fc/3 (what auto chose, and its bucket count)."""
    if row["sync"] == "auto":
        a = row.get("auto") or {}
        return "auto" + (f"={a['sync']}/{len(a['buckets'])}" if "sync" in a else "")
    text = row["sync"] + (f":{row['progress']}" if row.get("progress") and row["sync"] != "single"
                          and row["sync"] != "blocking" else "")
    return text + (f"@{row['bucket_mb']:g}" if isinstance(row.get("bucket_mb"), float) else "")
