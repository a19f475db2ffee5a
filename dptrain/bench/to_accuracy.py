"""``dptrain bench --to-accuracy A``: wall time to a test accuracy, dptrain against PyTorch DDP.

For each rank count of --ranks, the same model, global batch, optimiser, learning rate of
every step, seed and initial weights are trained by ``mpiexec -n P dptrain train
--stop-at-accuracy A`` (the command a user runs, at dptrain's defaults otherwise) and by
PyTorch DistributedDataParallel over gloo (torch_tta.py), 1 BLAS thread per rank, evaluating
the test split (in batches of 128, both) after every epoch, and every --eval-every-steps N
steps within epochs too, and stopping at the first evaluation that reaches A (or after
--max-epochs). Each row is printed when its run ends: epochs (fractional when stopped inside
one), steps, the time to the target (training and evaluation up to that evaluation; start-up
excluded) and the part of it spent evaluating, the process's whole wall time, training img/s,
the last test accuracy; then dptrain's time over DDP's. With --rounds R (default 3) the pairs
are run R times, in alternating order, round k with seed --seed + k - 1 (both frameworks
alike: a threshold is crossed at a step that rounding noise moves, and the rounds sample that,
not one draw of it), and the medians and the ratio of the medians end the report.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile

from ..errors import UsageError
from ..train.evaluate import CPU_BATCH
from .shared import emit_json, torch_skip_reason
from .watched_run import run_watched

OPTIMIZERS = ("adadelta", "momentum", "sgd")      # those torch_tta.py mirrors exactly
ROW_DEADLINE_S = 3600
EVAL_BATCH = CPU_BATCH             # both evaluate in dptrain's CPU batches (PyTorch gains as much)


def add_to_accuracy_arguments(p) -> None:
    p.add_argument("--to-accuracy", type=float, metavar="A", help="train --model on "
                   "--dataset until the test accuracy reaches A, with dptrain and with PyTorch "
                   "DDP (gloo) on each rank count of --ranks (default 1), and compare the "
                   "wall times (docs/performance.md, Time to accuracy)")
    p.add_argument("--dataset", default="mnist5k", metavar="SPEC",
                   help="with --to-accuracy: the data set, named as for train (mnist:DIR: "
                   "dptrain data fetch-mnist writes one)")
    p.add_argument("--max-epochs", type=int, default=10, metavar="N",
                   help="with --to-accuracy: give up after N epochs")
    p.add_argument("--eval-every-steps", type=int, default=0, metavar="N",
                   help="with --to-accuracy: evaluate the test split every N steps within "
                   "epochs too, in both frameworks (0: after every epoch only)")
    p.add_argument("--optimizer", default="adadelta", choices=OPTIMIZERS,
                   help="with --to-accuracy: the optimiser of both frameworks")
    p.add_argument("--lr", type=float, default=1.0, help="with --to-accuracy: the "
                   "learning rate (of the schedule's start)")
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "step", "cosine"),
                   help="with --to-accuracy: the learning-rate schedule, as train's (cosine "
                   "over --max-epochs)")
    p.add_argument("--lr-step-size", type=int, default=1000, metavar="N",
                   help="with --to-accuracy and --lr-schedule step: steps between decays")
    p.add_argument("--lr-gamma", type=float, default=0.1,
                   help="with --to-accuracy and --lr-schedule step: factor of each decay")
    p.add_argument("--seed", type=int, default=0, help="with --to-accuracy: seed of the "
                   "initial weights (dptrain's, copied into PyTorch) and of the batch order in "
                   "round 1; round k uses seed + k - 1")


def _check(args) -> list[int]:
    from .. import data, models
    if not 0 < args.to_accuracy <= 1:
        raise UsageError(f"--to-accuracy must be in (0, 1], got {args.to_accuracy}")
    for flag, v in (("--max-epochs", args.max_epochs), ("--batch-size", args.batch_size),
                    ("--rounds", args.rounds)):
        if v <= 0:
            raise UsageError(f"{flag} must be positive, got {v}")
    if args.eval_every_steps < 0:
        raise UsageError(f"--eval-every-steps must be non-negative, got {args.eval_every_steps}")
    if not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if args.lr_step_size <= 0 or not 0 < args.lr_gamma <= 1:
        raise UsageError(f"--lr-step-size must be positive and --lr-gamma in (0, 1], got "
                         f"{args.lr_step_size} and {args.lr_gamma}")
    if args.model not in models.names():
        raise UsageError(f"--to-accuracy trains a model of the zoo ({', '.join(models.names())}),"
                         f" not {args.model!r}")
    try:
        ranks = [int(r) for r in (args.ranks or "1").split(",")]
    except ValueError:
        raise UsageError(f"--ranks {args.ranks!r}: expected rank counts such as 1,2") from None
    if not ranks or min(ranks) < 1:
        raise UsageError(f"--ranks {args.ranks!r}: rank counts must be positive")
    if args.launcher is not None or args.hostfile is not None:
        raise UsageError("--to-accuracy runs its ranks on this host: leave out --launcher "
                         "and --hostfile")
    from .launcher import local_launcher
    local_launcher()                               # no mpiexec: exit 2 before any run
    try:
        ds = data.load(args.dataset)               # a bad data set is exit 2 before any run
    except data.DataError as exc:
        raise UsageError(f"--dataset {args.dataset}: {exc}") from None
    from ..data.sampling import steps_per_epoch
    args.steps_per_epoch = steps_per_epoch(len(ds.x_train), args.batch_size)
    return ranks


def _env(threads: int) -> dict:
    n = str(threads)
    return dict(os.environ, OMP_NUM_THREADS=n, OPENBLAS_NUM_THREADS=n, MKL_NUM_THREADS=n)


def _dptrain_row(args, ranks: int, tmp: str, k: int) -> dict:
    from .launcher import local_launcher
    metrics = os.path.join(tmp, f"dptrain-{ranks}-round{k + 1}.jsonl")
    cmd = [*local_launcher().command(ranks), sys.executable, "-m", "dptrain", "train",
           "--model", args.model, "--dataset", args.dataset, "--batch-size",
           str(args.batch_size), "--optimizer", args.optimizer, *_schedule_flags(args),
           "--seed", str(args.seed + k), "--threads",
           str(args.threads), "--epochs", str(args.max_epochs), "--eval-every", "1",
           "--eval-every-steps", str(args.eval_every_steps), "--eval-batch-size",
           str(EVAL_BATCH), "--stop-at-accuracy", repr(args.to_accuracy), "--metrics-out", metrics]
    run = run_watched(cmd, _env(args.threads), ROW_DEADLINE_S,
                      _relay(f"dptrain {ranks}", ("epoch", "eval", "stopping")))
    if run.returncode != 0:
        return {"framework": "dptrain", "ranks": ranks, "error": run.why()}
    epochs, evals = [], []
    with open(metrics) as f:
        for line in f:
            r = json.loads(line)
            if r["type"] == "epoch":
                epochs.append(r)
            elif r["type"] == "eval" and r["split"] == "test":
                evals.append(r)
    return _row("dptrain", ranks, args, run.wall_s, k, steps=epochs[-1]["step"],
                train_s=[e["time_s"] for e in epochs], eval_s=[e["time_s"] for e in evals],
                images=sum(e["samples_per_s"] * e["time_s"] for e in epochs),
                accuracy=evals[-1]["accuracy"], last_lr=epochs[-1]["lr"], command=" ".join(cmd))


def _torch_row(args, ranks: int, k: int) -> dict:
    cmd = [sys.executable, "-m", "dptrain.bench.torch_tta", "--model", args.model, "--dataset",
           args.dataset, "--batch-size", str(args.batch_size), "--optimizer", args.optimizer,
           *_schedule_flags(args), "--seed", str(args.seed + k), "--target",
           repr(args.to_accuracy), "--max-epochs", str(args.max_epochs), "--eval-every-steps",
           str(args.eval_every_steps), "--eval-batch-size", str(EVAL_BATCH), "--ranks",
           str(ranks), "--threads", str(args.threads)]
    lines = []

    def keep(text):
        if text.startswith("{"):
            lines.append(json.loads(text))
            e = lines[-1]
            if "epoch" in e:
                print(f"  DDP {ranks}: epoch {e['epoch']}  step {e['steps']}  test_acc "
                      f"{e['test_accuracy']:.4f}  {e['train_s'] + e['eval_s']:.1f} s", flush=True)
            elif "within_epoch" in e:
                print(f"  DDP {ranks}: eval  step {e['steps']}  epoch {e['within_epoch']}  "
                      f"test_acc {e['test_accuracy']:.4f}  {e['eval_s']:.1f} s", flush=True)
    run = run_watched(cmd, _env(args.threads), ROW_DEADLINE_S, keep)
    epochs = [r for r in lines if "epoch" in r]
    if run.returncode != 0 or not epochs:
        return {"framework": "PyTorch DDP", "ranks": ranks, "error": run.why()}
    return _row("PyTorch DDP", ranks, args, run.wall_s, k, steps=epochs[-1]["steps"],
                train_s=[e["train_s"] for e in epochs], eval_s=[e["eval_s"] for e in epochs],
                images=sum(e["samples"] for e in epochs), accuracy=epochs[-1]["test_accuracy"],
                last_lr=epochs[-1]["lr"], torch=lines[-1].get("torch"))


def _schedule_flags(args) -> list[str]:
    return ["--lr", repr(args.lr), "--lr-schedule", args.lr_schedule, "--lr-step-size",
            str(args.lr_step_size), "--lr-gamma", repr(args.lr_gamma)]


def _relay(label: str, prefixes: tuple):
    def relay(text):
        if text.startswith(prefixes):
            print(f"  {label}: {' '.join(text.split())}", flush=True)
    return relay


def _row(framework, ranks, args, wall_s, k, steps, train_s, eval_s, images, accuracy, **extra):
    train, evaluation = sum(train_s), sum(eval_s)
    return {"framework": framework, "ranks": ranks, "seed": args.seed + k,
            "epochs": round(steps / args.steps_per_epoch, 3), "steps": steps,
            "reached": accuracy >= args.to_accuracy, "time_to_target_s": train + evaluation,
            "eval_s": evaluation, "process_s": wall_s, "images_per_s": images / train,
            "test_accuracy": accuracy, **extra}


HEADER = (f"{'round':>5} {'framework':<12} {'ranks':>5} {'epochs':>6} {'steps':>6} "
          f"{'to target s':>11} {'eval s':>7} {'process s':>9} {'img/s':>7} {'test acc':>8}  reached")


def _print_row(r: dict) -> None:
    if "error" in r:
        print(f"{r['round']:>5} {r['framework']:<12} {r['ranks']:>5}  failed: {r['error']}",
              flush=True)
        return
    print(f"{r['round']:>5} {r['framework']:<12} {r['ranks']:>5} {r['epochs']:>6.3g} "
          f"{r['steps']:>6} {r['time_to_target_s']:>11.1f} {r['eval_s']:>7.1f} "
          f"{r['process_s']:>9.1f} {r['images_per_s']:>7.0f} {r['test_accuracy']:>8.4f}  "
          f"{'yes' if r['reached'] else 'no'}", flush=True)


def _schedule(args) -> str:
    if args.lr_schedule == "step":
        return f"x{args.lr_gamma:g} every {args.lr_step_size} steps"
    return args.lr_schedule


def _medians(rows: list[dict], ranks: list[int]) -> list[dict]:
    """Per framework and rank count, the medians over the rounds that reached the target."""
    summary = []
    for p in ranks:
        for framework in ("dptrain", "PyTorch DDP"):
            done = [r for r in rows if (r["framework"], r["ranks"]) == (framework, p)
                    and r.get("reached")]
            if done:
                summary.append({"framework": framework, "ranks": p, "rounds": len(done), **{
                    k: statistics.median(r[k] for r in done) for k in
                    ("epochs", "time_to_target_s", "eval_s", "process_s", "images_per_s")}})
    return summary


def _pair(args, p: int, k: int, tmp: str, with_torch: bool, show) -> dict:
    """Round k's rows for p ranks, dptrain first in odd rounds and DDP first in even ones,
    so that a machine growing busier or quieter does not favour one framework."""
    runs = [lambda: _dptrain_row(args, p, tmp, k)] + ([lambda: _torch_row(args, p, k)]
                                                   if with_torch else [])
    rows = {}
    for run in runs[::-1] if k % 2 else runs:
        r = dict(run(), round=k + 1)
        rows[r["framework"]] = r
        show(r)
    return rows


def run_to_accuracy(args) -> int:
    ranks = _check(args)
    skipped = torch_skip_reason(args, args.model)
    quiet = args.json
    out = print if not quiet else (lambda *a, **k: None)
    out(f"dptrain bench --to-accuracy {args.to_accuracy:g}: {args.model} on {args.dataset}, "
        f"global batch {args.batch_size}, {args.optimizer} lr {args.lr:g} ({_schedule(args)}), "
        f"seed {args.seed} (+ round - 1), test split after every epoch"
        f"{f' and every {args.eval_every_steps} steps' if args.eval_every_steps else ''}, "
        f"at most {args.max_epochs} epochs, "
        f"{args.threads} thread(s) per rank, {args.rounds} round(s) in alternating order",
        flush=True)
    if skipped:
        out(f"PyTorch DDP: not measured: {skipped}", flush=True)
    out(HEADER, flush=True)
    rows, per_round = [], {}
    with tempfile.TemporaryDirectory(prefix="dptrain-tta-") as tmp:
        for k in range(args.rounds):
            for p in ranks:
                pair = _pair(args, p, k, tmp, skipped is None,
                             (lambda r: None) if quiet else _print_row)
                rows += pair.values()
                if len(pair) == 2 and all(r.get("reached") for r in pair.values()):
                    ours, theirs = pair["dptrain"], pair["PyTorch DDP"]
                    per_round.setdefault(p, []).append(
                        ours["time_to_target_s"] / theirs["time_to_target_s"])
                    out(f"{'':>5} {'':<12} {p:>5}  dptrain / DDP time to target: "
                        f"{per_round[p][-1]:.2f} (process: "
                        f"{ours['process_s'] / theirs['process_s']:.2f})", flush=True)
    summary = _medians(rows, ranks)
    medians = {(m["framework"], m["ranks"]): m["time_to_target_s"] for m in summary}
    ratios = {p: medians[("dptrain", p)] / medians[("PyTorch DDP", p)] for p in per_round}
    if args.rounds > 1:
        out(f"medians over the rounds that reached {args.to_accuracy:g}:", flush=True)
        for m in summary:
            out(f"{'':>5} {m['framework']:<12} {m['ranks']:>5} {m['epochs']:>6g} {'':>6} "
                f"{m['time_to_target_s']:>11.1f} {m['eval_s']:>7.1f} {m['process_s']:>9.1f} "
                f"{m['images_per_s']:>7.0f}  ({m['rounds']} rounds)", flush=True)
        for p, r in ratios.items():
            out(f"{'':>5} {'':<12} {p:>5}  dptrain / DDP time to target, medians: {r:.2f} "
                f"(rounds: {min(per_round[p]):.2f}-{max(per_round[p]):.2f})", flush=True)
    emit_json({"to_accuracy": args.to_accuracy, "model": args.model, "dataset": args.dataset,
               "batch_size": args.batch_size, "optimizer": args.optimizer, "lr": args.lr,
               "lr_schedule": args.lr_schedule, "lr_step_size": args.lr_step_size,
               "lr_gamma": args.lr_gamma, "seed": args.seed,
               "eval_every_steps": args.eval_every_steps, "threads": args.threads,
               "max_epochs": args.max_epochs, "rounds": args.rounds, "rows": rows,
               "medians": summary, "dptrain_over_ddp": ratios,
               "dptrain_over_ddp_per_round": per_round}, args)
    return 3 if any("error" in r for r in rows) else 0
