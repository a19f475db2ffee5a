"""The ``dptrain`` command: train, eval, summary, bench, plot.

Exit codes (DESIGN.md): 0 success; 2 bad input or configuration, reported as
one line ``dptrain: error: ...`` naming the culprit; 3 a failure during training.
"""
from __future__ import annotations

import argparse
import json
import sys

from .errors import EXIT_FAILURE, EXIT_USAGE, TrainingFailure, UsageError, on_this_rank_only
from .train.config import FIELD_NAMES, TrainConfig, coerce, load_toml


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a UsageError (one line, exit 2)."""

    def error(self, message):
        raise UsageError(message)


def _mb_or_auto(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB or auto, got {text!r}") from None


def _add_train_flags(p):
    S = argparse.SUPPRESS     # absent flags stay absent, so config files can fill them
    a = p.add_argument
    a("--config", metavar="FILE.toml", help="TOML file with the same keys as these flags")
    a("--model", default=S, help="thesis-cnn (default), mlp, lenet5, vgg-cifar, mlp-wide")
    a("--dataset", default=S, help="mnist5k (default), mnist:DIR, fashion-mnist:DIR, "
      "cifar10:DIR, npz:FILE, synthetic[:CxHxW[:N]]")
    a("--epochs", type=int, default=S)
    a("--max-steps", type=int, default=S, help="stop after this many optimiser steps")
    a("--batch-size", type=int, default=S, help="global mini-batch size (split over ranks)")
    a("--optimizer", default=S, help="sgd, momentum (default), nesterov, adagrad, rmsprop, adadelta, "
      "adam, adamax")
    a("--lr", type=float, default=S, help="learning rate (default: the optimiser's own)")
    a("--momentum", type=float, default=S)
    a("--weight-decay", type=float, default=S)
    a("--lr-schedule", default=S, help="constant (default), step, cosine")
    a("--warmup-steps", type=int, default=S)
    a("--lr-step-size", type=int, default=S)
    a("--lr-gamma", type=float, default=S)
    a("--augment", default=S, help="comma list of crop, flip, shift; or none")
    a("--sampler", default=S, help="how global batches are drawn: uniform (default), obs, as")
    a("--sampler-min-prob", type=float, default=S,
      help="floor: mix sampling distributions with uniform (default 0.1; 0 = as published)")
    a("--obs-pressure", type=float, default=S, help="OBS selection pressure s (default 100)")
    a("--obs-recompute-every", type=int, default=S,
      help="OBS: recompute every sample's loss every N epochs (default 2; 0 never)")
    a("--as-beta", type=int, default=S, help="AS: samples between re-estimates of P (default 10)")
    a("--as-delta-p", type=float, default=S, help="AS: smoothing of P (default 0.9)")
    a("--as-delta-q", type=float, default=S, help="AS: smoothing of Q (default 0.1)")
    a("--as-weighting", default=S, help="AS: importance (default, unbiased) or none")
    a("--sync", default=S, help="gradient synchronisation: auto (default: chosen from measured layer "
      "times and link), blocking, overlap, overlap-fc")
    a("--fc-replicate", default=S,
      help="overlap-fc: which FC layers all-gather instead of all-reducing: auto (default), all, none")
    a("--bucket-mb", type=_mb_or_auto, default=S, help="gradient bucket size cap in MB, or auto "
      "(default: boundaries planned from measured layer times and link)")
    a("--comm-progress", default=S, help="how overlapped communication progresses: auto (default: poll for overlap, thread "
      "for overlap-fc, the faster of each in docs/performance.md), poll (Iallreduce tested between "
      "layers), thread (a communication thread), priority (chunks, most needed first)")
    a("--sync-bn", action="store_true", default=S, help="batch-norm statistics over the global batch")
    a("--accumulate", type=int, default=S,
      help="split each batch into N micro-batches; only the last communicates")
    a("--grad-dtype", default=S, help="float32 (default) or float16 (compressed Allreduce)")
    a("--seed", type=int, default=S)
    a("--device", default=S, help="cpu (default), gpu, auto")
    a("--allow-gpu-sharing", action="store_true", default=S,
      help="let more ranks than GPUs share a node's GPUs")
    a("--comm", default=S, help="how gradients travel: auto (default: NCCL on GPUs when CuPy has it, "
      "else CUDA-aware MPI when detected, else MPI through pinned host buffers; MPI on CPUs), "
      "mpi, nccl, cuda-mpi, staged")
    a("--dtype", default=S, help="float32 (default) or float64")
    a("--threads", type=int, default=S, help="BLAS threads per process")
    a("--checkpoint-dir", default=S, help="write checkpoints here (rank 0, atomically)")
    a("--checkpoint-every", default=S, help="N steps, or Ne epochs (default 1e); 0: at the end only")
    a("--keep-checkpoints", type=int, default=S, help="how many to keep (default 3)")
    a("--resume", action="store_true", default=S, help="continue from the newest valid checkpoint")
    a("--trace", metavar="FILE.json", default=S,
      help="Chrome trace of every rank's layers, updates and bucket reductions")
    a("--trace-steps", type=int, default=S, help="steps to trace, from step 1 (default 10)")
    a("--net-emulate", default=S, metavar="bw=10Gbit,lat=20us",
      help="hold every collective until an alpha-beta network model says it would end")
    a("--comm-timeout", type=float, default=S,
      help="seconds a collective may take before the job is ended (default 300)")
    a("--check-replicas", type=int, default=S,
      help="every N steps compare a hash of the parameters across ranks")
    a("--check-collectives", metavar="off|strict|N", default=S,
      help="cross-check that every rank posts the same collectives in the same order: a "
      "fingerprint every N steps and at the end, or strict (each collective, before it is "
      "posted); a mismatch ends the job with exit 3 naming it (default: "
      "$DPTRAIN_CHECK_COLLECTIVES, else off)")
    a("--num-classes", type=int, default=S,
      help="classes of the model (default: 1 + the largest training label, all of 0..K-1 present)")
    a("--skip-nonfinite", type=int, default=S,
      help="skip up to K steps whose loss is NaN/inf instead of failing")
    a("--eval-batch-size", type=int, default=S)
    a("--log-every", type=int, default=S, help="also log every N steps")
    a("--metrics-out", metavar="FILE.jsonl", default=S)
    a("--save-weights", metavar="FILE.npz", default=S)
    a("--quiet", action="store_true", default=S, help="no progress bar or per-epoch lines")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="dptrain", description="Data-parallel training of image classifiers over MPI.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model (run under mpiexec for several ranks)")
    _add_train_flags(t)

    e = sub.add_parser("eval", help="evaluate saved weights on a data set's test split")
    e.add_argument("--model", required=True)
    e.add_argument("--weights", required=True, metavar="FILE.npz")
    e.add_argument("--dataset", default="mnist5k")
    e.add_argument("--batch-size", type=int, default=1000)
    e.add_argument("--num-classes", type=int, help="as given to train")
    e.add_argument("--json", action="store_true")

    s = sub.add_parser("summary", help="per-layer parameters, activation memory and FLOPs")
    s.add_argument("--model", required=True)
    s.add_argument("--input-shape", help="CxHxW (default: the model's own)")
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--json", action="store_true")

    from .bench.command import add_bench_arguments
    add_bench_arguments(sub.add_parser("bench", help="training-step benchmark against PyTorch"))

    pl = sub.add_parser("plot", help="plot a metrics JSONL file, or a --trace timeline, to PNG")
    pl.add_argument("metrics", metavar="FILE.jsonl", nargs="?")
    pl.add_argument("--trace", metavar="FILE.json", help="draw this timeline (a lane per rank)")
    pl.add_argument("-o", "--output", required=True, metavar="FILE.png")
    return p


def train_config(args) -> TrainConfig:
    values = {}
    if args.config:
        values.update(load_toml(args.config))
    for name in FIELD_NAMES:
        if hasattr(args, name):
            values[name] = coerce(name, getattr(args, name), f"--{name.replace('_', '-')}")
    return TrainConfig(**values)


def _cmd_train(args) -> int:
    from . import comm as comms
    from .train import startup
    from .train.preemption import StopRequested, interrupt_on_signals, signals_held
    from .train.trainer import Trainer
    interrupt_on_signals()          # until the training loop's guard takes over, and after it
    with signals_held():
        world = comms.default()
    trainer = Trainer(startup.agree(world, lambda: train_config(args)), world)
    try:
        trainer.run()
    except StopRequested as stop:
        if trainer.is_root:
            print(f"dptrain: {stop}", file=sys.stderr)
    return 0


def _cmd_eval(args) -> int:
    from . import data
    from .train.evaluate import evaluate
    from .train.setup import build_model, load_weights
    from .train.validate import check_number
    check_number("batch_size", args.batch_size)
    check_number("num_classes", args.num_classes)
    try:
        ds = data.load(args.dataset, num_classes=args.num_classes)
    except data.DataError as exc:
        raise UsageError(str(exc)) from None
    cfg = TrainConfig(model=args.model, dataset=args.dataset)
    model = build_model(cfg, ds)
    load_weights(model, args.weights)
    res = evaluate(model, ds.x_test, ds.y_test, args.batch_size)
    if args.json:
        print(json.dumps({"model": args.model, "dataset": args.dataset, **res}))
    else:
        print(f"{args.model} on {args.dataset} test split ({res['samples']} samples): "
              f"loss {res['loss']:.4f}  accuracy {res['accuracy']:.4f}")
    return 0


def _cmd_summary(args) -> int:
    from . import models
    shape = None
    if args.input_shape:
        try:
            shape = tuple(int(v) for v in args.input_shape.lower().split("x"))
            assert len(shape) == 3 and min(shape) > 0
        except (ValueError, AssertionError):
            raise UsageError(f"--input-shape {args.input_shape!r}: expected CxHxW, e.g. 3x32x32") from None
    from .train.validate import check_number, check_model_fits
    check_number("batch_size", args.batch_size)
    if shape is not None:
        check_model_fits(args.model, shape, 10, what=f"--input-shape {args.input_shape}: "
                         f"{args.model}'s parameters")
    try:
        model = models.get(args.model, shape)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    summary = model.summary(batch_size=args.batch_size)
    print(json.dumps(summary.as_dict()) if args.json else summary)
    return 0


def _cmd_bench(args) -> int:
    from .bench.command import run_bench
    return run_bench(args)


def _cmd_plot(args) -> int:
    from .plot import plot_metrics, plot_trace
    if args.trace and args.metrics:
        raise UsageError("dptrain plot: give a metrics file or --trace, not both")
    if args.trace:
        plot_trace(args.trace, args.output)
    elif args.metrics:
        plot_metrics(args.metrics, args.output)
    else:
        raise UsageError("dptrain plot: give a metrics FILE.jsonl or --trace FILE.json")
    print(f"wrote {args.output}")
    return 0


def _report(exc, prefix: str, code: int, report: bool) -> int:
    """Agreed errors are printed by rank 0 alone; one only this rank saw (raised after the
    agreed start-up) is printed here and ends every rank at once with the same code."""
    from .comm.mpi import abort_world, launch_rank
    if getattr(exc, "local", False):
        rank = launch_rank()
        print(f"{prefix} {f'rank {rank}: ' if rank else ''}{exc}", file=sys.stderr)
        abort_world(code)
    elif report:
        print(f"{prefix} {exc}", file=sys.stderr)
    return code


COMMANDS = {"train": _cmd_train, "eval": _cmd_eval, "summary": _cmd_summary,
            "bench": _cmd_bench, "plot": _cmd_plot}


def main(argv=None) -> int:
    """Usage errors and training failures are agreed on by every rank (the trainer reduces
    them), so rank 0 alone reports them and every rank exits with the same code. Anything
    else may have hit one rank only: it is reported by that rank and ends the whole job."""
    from .comm.mpi import abort_world, launch_rank
    report = launch_rank() == 0
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        return _report(exc, "dptrain: error:", EXIT_USAGE, report)
    except TrainingFailure as exc:
        return _report(exc, "dptrain: training failed:", EXIT_FAILURE, report)
    except OSError as exc:        # a file system that filled up or went away, on this rank
        return _report(on_this_rank_only(exc), "dptrain: failed:", EXIT_FAILURE, report)
    except KeyboardInterrupt as exc:
        import signal
        signum = getattr(exc, "signum", signal.SIGINT)
        print(f"dptrain: interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        abort_world(128 + signum)
        return 128 + signum
    except Exception:
        import traceback
        print(f"dptrain: rank {launch_rank()} failed:", file=sys.stderr)
        traceback.print_exc()
        abort_world(EXIT_FAILURE)
        raise


if __name__ == "__main__":
    sys.exit(main())
