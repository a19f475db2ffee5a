"""``dptrain bench --ranks P --net-emulate ...``: models x emulated networks x schedules on P
ranks, and how much communication each schedule hides (the runs: bench/scaling.py's)."""
from __future__ import annotations

import statistics

from ..parallel import SCHEDULES, schedules as registered
from .scaling import _label, _launchers, _parse, _run


def run_overlap_bench(args) -> int:
    """Models x emulated networks x schedules on P ranks: how much communication is hidden.

    compute = the 'independent' step (same ranks, no exchange); exposed = step - compute;
    hidden = 1 - exposed / (blocking's exposed); of hid. = (blocking - step) / min(blocking's
    exposed, compute), the share of what perfect overlap could hide. Two bounds from per-layer times measured
    here and the network model (parallel/predict.py): 'sim.' simulates the schedule with one
    first-in-first-out channel, as dptrain runs it; 'dep.' is what the layer dependencies
    allow in any order (each bucket hides at most the compute between its gradients being
    final and its first layer being needed in the next forward pass). A figure outside its
    possible range (noise.py) is flagged, not printed as a fact.
    """
    from .stream import BenchStream
    ranks, schedules = _parse(args)
    p = max(ranks)
    schedules = [("independent", "thread", None)] + [s for s in schedules if s[0] != "independent"]
    launchers = _launchers(args)
    nets = args.net_emulate or [None]
    models = args.models.split(",")
    results: dict = {}
    layer_times: dict = {}

    def report() -> dict:
        return {"batch_per_rank": args.batch_size, "threads": args.threads, "rounds": args.rounds,
                "steps": args.steps, "rows": _rows(args, p, models, nets, results, layer_times)}
    stream = BenchStream(args, args.rounds * len(models) * len(nets) * len(schedules), report,
                         lambda rep: _print_overlap(rep, args, p))
    with stream.watch():
        for rnd in range(args.rounds):
            for model in models:
                for net in nets:
                    for sync, progress, mb in schedules:
                        key = (model, net, sync, progress, mb)
                        name = f"{model} {net or 'shared memory'} " + _label(
                            {"sync": sync, "progress": progress, "bucket_mb": mb})
                        stream.start(f"round {rnd + 1}, {name}")
                        run = _run(launchers, p, sync, progress, args, model, net, bucket_mb=mb)
                        results.setdefault(key, []).append(run)
                        stream.finished(f"  round {rnd + 1}/{args.rounds}: {name}: step "
                                        f"{run['step_s'] * 1e3:.1f} ms")
    return stream.close()


def _times(args, model, layer_times):
    if model not in layer_times:
        from .. import backend, models as zoo
        from .predict import measure_layer_times
        backend.set_threads(args.threads)
        layer_times[model] = measure_layer_times(zoo.get(model), args.batch_size, steps=3)
    return layer_times[model]


def _rows(args, p, models, nets, results, layer_times) -> list[dict]:
    """Rows of the (model, network) pairs whose compute ('independent') step is measured."""
    from ..comm.emulated import AlphaBeta, parse_spec
    from ..parallel.predict import auto_fc_layers, dependency_bound, simulate
    from .node_rows import node_fields
    from .noise import flag
    rows = []
    for model in models:
        gb = args.batch_size * p
        for net in nets:
            step = {k[2:]: statistics.median(r["step_s"] for r in v) for k, v in results.items()
                    if k[:2] == (model, net)}
            if ("independent", "thread", None) not in step:
                continue
            times = _times(args, model, layer_times)
            spec = parse_spec(net) if net else None
            ab = AlphaBeta(spec["latency_s"], spec["bandwidth_bps"]) if spec else None
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
                    # of what perfect overlap could hide: the smaller of blocking's exposed
                    # time and compute (issue 24's figure; above 1 when the schedule also sends
                    # fewer bytes, as overlap-fc does)
                    row["hidden_of_hideable"] = (blocking_exposed - exposed) / min(blocking_exposed, compute)
                    if ab and overlapping:
                        fc = auto_fc_layers(times, gb)
                        b, o = (simulate(times, p, ab, s, cap, fc, gb) for s in ("blocking", sync))
                        row["bound_hidden_fraction"] = 1 - o["exposed_s"] / b["exposed_s"]
                    if ab and overlapping and not registered.get(sync).replicates_fc:
                        row["dependency_bound"] = dependency_bound(times, p, ab, cap)
                rows.append(flag(row))
    return rows


def _print_overlap(report: dict, args, p) -> None:
    from .node_rows import node_lines
    from .noise import cell, notes
    print(f"dptrain bench: overlap on {p} ranks, batch {args.batch_size} per rank, {args.threads} "
          f"thread(s), {args.rounds} rounds x {args.steps} steps (medians); compute = independent step")
    print(f"  {'model':<11} {'network':<14} {'schedule':<16} {'step ms':>8} {'img/s':>7} {'exposed':>8} "
          f"{'hidden':>7} {'of hid.':>7} {'sim.':>6} {'dep.':>6} {'MB sent':>8}")
    rows = report["rows"]
    for r in rows:
        print(f"  {r['model']:<11} {r['net']:<14} {_label(r):<16} {r['step_ms']:>8.1f} "
              f"{r['images_per_s']:>7.0f} {cell(r, 'exposed_ms', '.1f'):>8} "
              f"{cell(r, 'hidden_fraction', '.2f'):>7} {cell(r, 'hidden_of_hideable', '.2f'):>7} "
              f"{cell(r, 'bound_hidden_fraction', '.2f'):>6} {cell(r, 'dependency_bound', '.2f'):>6} "
              f"{r['bytes_per_step'] / 2**20:>8.3f}"
              + (f"  {r['step_vs_best_hand_set']:.3f} x the best hand-set step"
                 if "step_vs_best_hand_set" in r else ""))
        for line in node_lines(r):
            print(line)
    for line in notes(rows, lambda r: f"{r['model']} {r['net']} {_label(r)}"):
        print(line)
