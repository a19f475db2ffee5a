#!/usr/bin/env python3
"""Reproduce seed 003's sampling experiment (Tables 3-4, Figs. 20-23) with dptrain.

Samplers (and readings of Adaptive Sampling, --variants) x Adadelta (lr 1.0, rho 0.9) and
Adam (lr 1e-3) x batch 64, 256, 1024, E epochs, R repeats (seeds 0..R-1), thesis-cnn on
mnist5k or a full MNIST directory (--dataset mnist:DIR), on P ranks.

    python scripts/reproduce_sampling.py --epochs 15 --repeats 3 --out runs/sampling
    python scripts/reproduce_sampling.py --dataset mnist:/data/mnist --batches 1024 \\
        --variants uniform,obs,as-eq67 --out runs/sampling-mnist
    python scripts/reproduce_sampling.py --out runs/sampling --report-only

Two training costs per epoch, since the thesis never says which it plotted:
  * training-set loss: the mean loss over the whole training set in inference mode
    (--eval-train, the metrics' "eval" line with "split": "train"), the same quantity for
    every sampler;
  * mini-batch loss: the mean of the losses of the epoch's own training batches (the "step"
    lines, --log-every 1), what a training loop that prints its batch loss shows. A sampler
    that draws easy samples (or, collapsed, one class) makes it small without learning.
Every table cell is the median over the R repeats with its inter-quartile range; the ratios
AS / uniform and AS / OBS (Tables 3-4) pair the runs of the same seed. Plots draw the median
and the inter-quartile band. Writes, under --out: one metrics file per run (kept: a rerun
reuses the finished ones), results.json, table.md and PNG plots.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OPTIMIZERS = {"adadelta": ["--optimizer", "adadelta", "--lr", "1.0"],
              "adam": ["--optimizer", "adam", "--lr", "0.001"]}
_AS = ["--sampler", "as"]
# Every AS reading spelled out, so a change of dptrain's defaults cannot change a variant.
VARIANTS = {
    "uniform": ["--sampler", "uniform"],
    "obs": ["--sampler", "obs"],
    "as-listing": _AS + ["--as-bound", "listing", "--as-refresh", "drawn", "--as-counter", "batches"],
    "as-eq67": _AS + ["--as-bound", "eq67", "--as-refresh", "drawn", "--as-counter", "batches"],
    "as-listing-every-bin": _AS + ["--as-bound", "listing", "--as-refresh", "every-bin",
                                   "--as-counter", "batches"],
    "as-eq67-every-bin": _AS + ["--as-bound", "eq67", "--as-refresh", "every-bin",
                                "--as-counter", "batches"],
    "as-listing-samples": _AS + ["--as-bound", "listing", "--as-refresh", "drawn",
                                 "--as-counter", "samples"],
    "as-eq67-samples": _AS + ["--as-bound", "eq67", "--as-refresh", "drawn", "--as-counter", "samples"],
    # Algorithm 1 taken literally in every respect: no importance weights, no floor either
    "as-literal": _AS + ["--as-bound", "listing", "--as-refresh", "drawn", "--as-counter", "samples",
                         "--as-weighting", "none", "--sampler-min-prob", "0"],
}
MEASURES = {"train_set": "training-set loss", "minibatch": "mini-batch loss"}


def metrics_path(out: Path, variant, opt, batch, repeat) -> Path:
    return out / f"{variant}-{opt}-{batch}-r{repeat}.jsonl"


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def finished(lines: list[dict], epochs: int) -> bool:
    return any(r.get("type") == "eval" and r.get("split") == "train" and r["epoch"] == epochs
               for r in lines)


def run_one(args, variants, variant, opt, batch, repeat, out: Path) -> list[dict]:
    metrics = metrics_path(out, variant, opt, batch, repeat)
    if args.report_only or (finished(read_lines(metrics), args.epochs) and not args.force):
        return read_lines(metrics)
    metrics.unlink(missing_ok=True)              # an unfinished run starts again
    bindir = os.path.dirname(sys.executable)
    cmd = [os.path.join(bindir, "mpiexec"), "-n", str(args.ranks), os.path.join(bindir, "dptrain"),
           "train", "--model", "thesis-cnn", "--dataset", args.dataset, "--epochs", str(args.epochs),
           "--batch-size", str(batch), "--seed", str(repeat), "--threads", "1", "--quiet",
           "--eval-train", "--log-every", "1", "--metrics-out", str(metrics), *OPTIMIZERS[opt],
           *variants[variant], *args.extra]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    status = "ok" if res.returncode == 0 else f"exit {res.returncode}: {res.stderr.strip()[-300:]}"
    print(f"{variant:>22} {opt:>8} batch {batch:>5} repeat {repeat}: {time.time() - t0:6.1f} s "
          f"{status}", flush=True)
    return read_lines(metrics)


def curves(lines: list[dict]) -> list[dict]:
    """Per epoch: training-set loss, mini-batch loss (the mean of the epoch's logged batch
    losses; the epoch line's sample-weighted mean when no step lines were logged), test
    accuracy, cumulative training time."""
    epochs = [r for r in lines if r.get("type") == "epoch"]
    evals = [r for r in lines if r.get("type") == "eval"]
    train_set = {r["epoch"]: r["loss"] for r in evals if r["split"] == "train"}
    test_acc = {r["epoch"]: r["accuracy"] for r in evals if r["split"] == "test"}
    steps = {}
    for r in lines:
        if r.get("type") == "step":
            steps.setdefault(r["epoch"], []).append(r["loss"])
    out, elapsed = [], 0.0
    for r in epochs:
        elapsed += r["time_s"]
        minibatch = float(np.mean(steps[r["epoch"]])) if r["epoch"] in steps else r["loss"]
        out.append({"epoch": r["epoch"], "train_set": train_set.get(r["epoch"], float("nan")),
                    "minibatch": minibatch, "test_accuracy": test_acc.get(r["epoch"], float("nan")),
                    "time_s": elapsed})
    return out


def spread(values) -> dict:
    """Median and inter-quartile range (linear interpolation) of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if not len(v):
        return {"median": float("nan"), "q25": float("nan"), "q75": float("nan"), "n": 0}
    q25, med, q75 = np.percentile(v, [25, 50, 75])
    return {"median": float(med), "q25": float(q25), "q75": float(q75), "n": int(len(v))}


def p_still_uniform(lines: list[dict]) -> float | None:
    """For AS counting batches: delta_p ** (re-estimates of P), the share of the initial
    uniform P left in it at the end. Above 0.1, P has barely moved: the cell says little."""
    run = next((r for r in lines if r.get("type") == "run"), None)
    if run is None or run["config"].get("sampler") != "as":
        return None
    c = run["config"]
    if c.get("as_counter", "batches") != "batches":
        return 0.0
    return c["as_delta_p"] ** (run["total_steps"] // c["as_beta"])


def finished_curves(results: dict, variant, opt, batch, epochs: int) -> dict:
    """{repeat: curve} of the cell's runs that reached ``epochs``."""
    return {rep: c for (v, o, b, rep), (c, _) in results.items()
            if (v, o, b) == (variant, opt, batch) and len(c) >= epochs}


def summarise(results: dict, epochs: int, variants: list[str]) -> list[dict]:
    """One row per (optimiser, batch, variant), every number a spread over the repeats."""
    rows = []
    for opt, batch, variant in itertools.product(OPTIMIZERS, sorted({k[2] for k in results}), variants):
        runs = finished_curves(results, variant, opt, batch, epochs)
        if not runs:
            continue
        last = {rep: c[epochs - 1] for rep, c in runs.items()}
        row = {"optimizer": opt, "batch": batch, "variant": variant, "runs": len(runs),
               "test_accuracy": spread(x["test_accuracy"] for x in last.values()),
               "time_s": spread(x["time_s"] for x in last.values())}
        bases = ("uniform", "obs") if variant.startswith("as") else ()
        base_last = {base: {rep: c[epochs - 1] for rep, c in
                            finished_curves(results, base, opt, batch, epochs).items()}
                     for base in bases}
        for m in MEASURES:
            row[m] = spread(x[m] for x in last.values())
            for base, other in base_last.items():
                row[f"{m}_over_{base}"] = spread(last[r][m] / other[r][m] for r in last if r in other)
        uniform_left = [u for (v, o, b, _), (c, lines) in results.items()
                        if (v, o, b) == (variant, opt, batch)
                        for u in [p_still_uniform(lines)] if u is not None]
        row["p_still_uniform"] = max(uniform_left) if uniform_left else None
        rows.append(row)
    return rows


def cell(s: dict | None, fmt="{:.3g}") -> str:
    if not s or not s["n"]:
        return "-"
    if s["n"] == 1:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} [{fmt.format(s['q25'])}, {fmt.format(s['q75'])}]"


def table(rows, epochs) -> str:
    head = (f"| optimiser | batch | sampler | training-set loss | mini-batch loss | "
            "AS / uniform (set) | AS / uniform (mini-batch) | AS / OBS (set) | "
            f"AS / OBS (mini-batch) | test accuracy | time per {epochs} epochs (s) | runs |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|---|\n")
    body = ""
    for r in rows:
        short = r["p_still_uniform"]
        flag = f" (P {short:.0%} uniform)" if short is not None and short > 0.1 else ""
        body += (f"| {r['optimizer']} | {r['batch']} | {r['variant']}{flag} | {cell(r['train_set'])} | "
                 f"{cell(r['minibatch'])} | {cell(r.get('train_set_over_uniform'))} | "
                 f"{cell(r.get('minibatch_over_uniform'))} | {cell(r.get('train_set_over_obs'))} | "
                 f"{cell(r.get('minibatch_over_obs'))} | {cell(r['test_accuracy'], '{:.3f}')} | "
                 f"{cell(r['time_s'], '{:.1f}')} | {r['runs']} |\n")
    return head + body


def plot(results, out: Path, opts, batches, variants, epochs: int) -> None:
    """Finished runs only, so an unfinished one cannot cut the others' curves short."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for x_key, y_key, ylabel, name, log in [
            ("epoch", "train_set", "training-set loss", "cost_vs_epoch", True),
            ("epoch", "minibatch", "mini-batch loss", "batch_cost_vs_epoch", True),
            ("time_s", "train_set", "training-set loss", "cost_vs_time", True),
            ("epoch", "test_accuracy", "test accuracy", "accuracy_vs_epoch", False)]:
        fig, axes = plt.subplots(len(opts), len(batches), figsize=(4.2 * len(batches), 3.5 * len(opts)),
                                 squeeze=False)
        for (i, opt), (j, batch) in itertools.product(enumerate(opts), enumerate(batches)):
            ax = axes[i][j]
            for variant in variants:
                runs = list(finished_curves(results, variant, opt, batch, epochs).values())
                if not runs:
                    continue
                n = min(len(c) for c in runs)
                xs = [float(np.median([c[e][x_key] for c in runs])) for e in range(n)]
                ys = np.array([[c[e][y_key] for c in runs] for e in range(n)], dtype=np.float64)
                line, = ax.plot(xs, np.median(ys, axis=1), label=variant)
                if ys.shape[1] > 1:
                    ax.fill_between(xs, np.percentile(ys, 25, axis=1), np.percentile(ys, 75, axis=1),
                                    color=line.get_color(), alpha=0.2, linewidth=0)
            ax.set_title(f"{opt}, batch {batch}")
            ax.set_xlabel("epoch" if x_key == "epoch" else "training time (s)")
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(f"{ylabel}: median over the repeats,\ninter-quartile band", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=80)
        plt.close(fig)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist5k", help="mnist5k, or mnist:DIR for the 60,000 digits")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batches", default="64,256,1024")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    p.add_argument("--variants", default="uniform,obs,as-listing,as-eq67,as-eq67-every-bin",
                   help="comma list of: " + ", ".join(VARIANTS) + ", or names given by --variant")
    p.add_argument("--variant", action="append", default=[], metavar="NAME=FLAGS",
                   help="a variant of one's own: a name and its dptrain train flags")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--out", default="runs/sampling")
    p.add_argument("--force", action="store_true", help="rerun runs whose metrics exist")
    p.add_argument("--report-only", action="store_true",
                   help="run nothing: tables and plots from the metrics files there are")
    p.add_argument("extra", nargs="*", help="more `dptrain train` flags for every run, after --")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    variants = dict(VARIANTS)
    for spec in args.variant:
        name, _, flags = spec.partition("=")
        variants[name] = flags.split()
    chosen = args.variants.split(",")
    unknown = [v for v in chosen if v not in variants]
    if unknown:
        sys.exit(f"reproduce_sampling.py: unknown variant(s) {', '.join(unknown)}")
    opts = args.optimizers.split(",")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batches.split(",")]
    results = {}
    for repeat, opt, batch, variant in itertools.product(range(args.repeats), opts, batches, chosen):
        lines = run_one(args, variants, variant, opt, batch, repeat, out)
        results[(variant, opt, batch, repeat)] = (curves(lines), lines)
    rows = summarise(results, args.epochs, chosen)
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "variants": {v: variants[v] for v in chosen}, "rows": rows,
         "curves": {"-".join(map(str, k)): c for k, (c, _) in results.items()}}, indent=1))
    (out / "table.md").write_text(table(rows, args.epochs))
    plot(results, out, opts, batches, chosen, args.epochs)
    print(table(rows, args.epochs))


if __name__ == "__main__":
    main()
