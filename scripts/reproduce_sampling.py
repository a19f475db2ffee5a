#!/usr/bin/env python3
"""Reproduce seed 003's sampling experiment (Tables 3-4, Figs. 20-23) with dptrain.

uniform vs OBS vs AS  x  Adadelta (lr 1.0, rho 0.9) and Adam (lr 1e-3)  x  batch 64, 256, 1024,
E epochs, R repeats, thesis-cnn on mnist5k (or a full MNIST directory), on P ranks.

    python scripts/reproduce_sampling.py --epochs 15 --repeats 2 --out runs/sampling
    python scripts/reproduce_sampling.py --dataset mnist:/data/mnist --epochs 50 --repeats 15

Writes, under --out: one metrics file per run, results.json, table.md (training cost ratio
at the last epoch AS/uniform and AS/OBS, training time per E epochs) and PNG plots of the
training-set loss and the test accuracy against epoch and against time. The training cost
is the loss over the whole training set, evaluated each epoch (--eval-train; the metrics'
"eval" line with "split": "train"), so the samplers are compared on the same quantity.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

OPTIMIZERS = {"adadelta": ["--optimizer", "adadelta", "--lr", "1.0"],
              "adam": ["--optimizer", "adam", "--lr", "0.001"]}
SAMPLERS = ("uniform", "obs", "as")


def run_one(args, sampler, opt, batch, repeat, out: Path) -> list[dict]:
    metrics = out / f"{sampler}-{opt}-{batch}-r{repeat}.jsonl"
    if not metrics.exists() or args.force:
        metrics.unlink(missing_ok=True)
        bindir = os.path.dirname(sys.executable)
        mpiexec = os.path.join(bindir, "mpiexec")
        cmd = [mpiexec, "-n", str(args.ranks), os.path.join(bindir, "dptrain"), "train",
               "--model", "thesis-cnn", "--dataset", args.dataset, "--epochs", str(args.epochs),
               "--batch-size", str(batch), "--sampler", sampler, "--seed", str(repeat),
               "--threads", "1", "--quiet", "--eval-train", "--metrics-out", str(metrics), *OPTIMIZERS[opt],
               *args.extra]
        t0 = time.time()
        res = subprocess.run(cmd, capture_output=True, text=True)
        status = "ok" if res.returncode == 0 else f"exit {res.returncode}: {res.stderr.strip()[-200:]}"
        print(f"{sampler:>8} {opt:>8} batch {batch:>5} repeat {repeat}: {time.time() - t0:6.1f} s "
              f"{status}", flush=True)
    lines = [json.loads(line) for line in metrics.read_text().splitlines()] if metrics.exists() else []
    return lines


def curves(lines: list[dict]) -> dict:
    """Per epoch: training-set loss, test accuracy, cumulative training time."""
    train_batches = [r for r in lines if r.get("type") == "epoch"]
    evals = [r for r in lines if r.get("type") == "eval"]
    train_split = {r["epoch"]: r["loss"] for r in evals if r["split"] == "train"}
    test_acc = {r["epoch"]: r["accuracy"] for r in evals if r["split"] == "test"}
    out, elapsed = [], 0.0
    for r in train_batches:
        elapsed += r["time_s"]
        out.append({"epoch": r["epoch"], "cost": train_split.get(r["epoch"], float("nan")),
                    "test_accuracy": test_acc.get(r["epoch"], float("nan")), "time_s": elapsed})
    return out


def summarise(results: dict, epochs: int) -> list[dict]:
    rows = []
    for opt, batch in itertools.product(OPTIMIZERS, sorted({k[2] for k in results})):
        cell = {"optimizer": opt, "batch": batch}
        for sampler in SAMPLERS:
            runs = [c for (s, o, b, _), c in results.items() if (s, o, b) == (sampler, opt, batch) and c]
            finished = [c for c in runs if len(c) >= epochs]
            costs = [c[epochs - 1]["cost"] for c in finished]
            times = [c[epochs - 1]["time_s"] for c in finished]
            cell[f"{sampler}_cost"] = statistics.mean(costs) if costs else float("nan")
            cell[f"{sampler}_time_s"] = statistics.mean(times) if times else float("nan")
            cell[f"{sampler}_runs"] = f"{len(finished)}/{len(runs)}"
        cell["as_over_uniform"] = cell["as_cost"] / cell["uniform_cost"]
        cell["as_over_obs"] = cell["as_cost"] / cell["obs_cost"]
        rows.append(cell)
    return rows


def table(rows, epochs) -> str:
    head = (f"| optimiser | batch | cost uniform | cost OBS | cost AS | AS / uniform | AS / OBS | "
            f"time per {epochs} epochs uniform / OBS / AS (s) | finished runs u/o/a |\n"
            "|---|---|---|---|---|---|---|---|---|\n")
    body = "".join(
        f"| {r['optimizer']} | {r['batch']} | {r['uniform_cost']:.4g} | {r['obs_cost']:.4g} | "
        f"{r['as_cost']:.4g} | {r['as_over_uniform']:.3g} | {r['as_over_obs']:.3g} | "
        f"{r['uniform_time_s']:.1f} / {r['obs_time_s']:.1f} / {r['as_time_s']:.1f} | "
        f"{r['uniform_runs']} {r['obs_runs']} {r['as_runs']} |\n" for r in rows)
    return head + body


def plot(results, out: Path, batches) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    for x_key, y_key, ylabel, name, log in [("epoch", "cost", "training cost", "cost_vs_epoch", True),
                                            ("time_s", "cost", "training cost", "cost_vs_time", True),
                                            ("epoch", "test_accuracy", "test accuracy", "accuracy_vs_epoch", False),
                                            ("time_s", "test_accuracy", "test accuracy", "accuracy_vs_time", False)]:
        fig, axes = plt.subplots(len(OPTIMIZERS), len(batches), figsize=(4 * len(batches), 6.5),
                                 squeeze=False)
        for (i, opt), (j, batch) in itertools.product(enumerate(OPTIMIZERS), enumerate(batches)):
            ax = axes[i][j]
            for sampler in SAMPLERS:
                runs = [c for (s, o, b, _), c in results.items() if (s, o, b) == (sampler, opt, batch) and c]
                if not runs:
                    continue
                n = min(len(c) for c in runs)
                xs = [statistics.mean(c[e][x_key] for c in runs) for e in range(n)]
                ys = [statistics.mean(c[e][y_key] for c in runs) for e in range(n)]
                ax.plot(xs, ys, label=sampler)
            ax.set_title(f"{opt}, batch {batch}")
            ax.set_xlabel("epoch" if x_key == "epoch" else "training time (s)")
            ax.set_ylabel(ylabel)
            if log:
                ax.set_yscale("log")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        fig.savefig(out / f"{name}.png", dpi=90)
        plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batches", default="64,256,1024")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--out", default="runs/sampling")
    p.add_argument("--force", action="store_true", help="rerun runs whose metrics exist")
    p.add_argument("extra", nargs="*", help="more `dptrain train` flags, after --")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batches.split(",")]
    results = {}
    for repeat, opt, batch, sampler in itertools.product(range(args.repeats), OPTIMIZERS, batches,
                                                         SAMPLERS):
        results[(sampler, opt, batch, repeat)] = curves(run_one(args, sampler, opt, batch, repeat, out))
    rows = summarise(results, args.epochs)
    (out / "results.json").write_text(json.dumps(
        {"args": vars(args), "rows": rows,
         "curves": {"-".join(map(str, k)): v for k, v in results.items()}}, indent=1))
    (out / "table.md").write_text(table(rows, args.epochs))
    plot(results, out, batches)
    print(table(rows, args.epochs))


if __name__ == "__main__":
    main()
