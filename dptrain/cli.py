"""The ``dptrain`` command: train, eval, summary, models, bench, check, plot, data.

Exit codes (docs/errors.md): 0 success; 2 bad input or configuration, reported as
one line ``dptrain: error: ...`` naming the culprit; 3 a failure during training;
128 + N interrupted by signal N (130 for Ctrl-C, 143 for SIGTERM). The parsers are in
cli_parsing.py.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

from . import last_words, phase_watch  # noqa: F401 (phase_watch: the start-up clock starts)
from .errors import (EXIT_FAILURE, EXIT_USAGE, RankFailure, TrainingFailure,
                     UsageError, on_this_rank_only)
from .cli_parsing import Help, Parser, add_command
from .interrupts import dump_stacks_on_sigquit, interrupt_on_signals, signal_received
from .launch_env import launch_rank

# Nothing above imports numpy or MPI: a Ctrl-C during the heavy imports, which happen inside
# main(), is caught there and reported once.


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .models import names as model_names
    from .train_flags import add_debug_flag, add_train_flags
    p = Parser(prog="dptrain", formatter_class=Help,
               description="Data-parallel training of image classifiers over MPI. Run a "
               "command with --help for its flags; run under mpiexec for several ranks.")
    p.add_argument("--version", action="version", version=f"dptrain {__version__}")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser,
                           metavar="COMMAND")

    add_train_flags(add_command(sub, "train", "train a model (under mpiexec: data-parallel)"),
                    model_names())

    e = add_command(sub, "eval", "evaluate saved weights on a data set's test split")
    e.add_argument("--model", required=True, metavar="NAME",
                   help="the model the weights belong to: " + ", ".join(model_names())
                   + ", or FILE.py:NAME / package.module:NAME as given to train")
    e.add_argument("--weights", required=True, metavar="FILE.npz",
                   help="weights written by train --save-weights")
    e.add_argument("--dataset", default="mnist5k", metavar="NAME",
                   help="as for train; its test split is evaluated")
    e.add_argument("--batch-size", type=int, metavar="N",
                   help="samples per forward pass (default: 128 on the CPU, 1000 on a GPU)")
    e.add_argument("--num-classes", type=int, metavar="K", help="as given to train")
    e.add_argument("--json", action="store_true", help="one JSON object instead of a sentence")
    add_debug_flag(e)

    s = add_command(sub, "summary", "per-layer parameters, activation memory and FLOPs of a model")
    s.add_argument("--model", metavar="NAME", help="one of: " + ", ".join(model_names())
                   + "; or your own, FILE.py:NAME or package.module:NAME, with --input-shape")
    s.add_argument("--list", action="store_true", help="list the models and what they are")
    s.add_argument("--input-shape", metavar="CxHxW",
                   help="per-sample input shape (none: a zoo model's own)")
    s.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="batch size the activation memory is counted for")
    s.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    add_debug_flag(s)

    m = add_command(sub, "models", "list the models, with their input shape and parameter count")
    m.add_argument("--json", action="store_true", help="one JSON object instead of a table")
    add_debug_flag(m)

    from .bench.command import add_bench_arguments
    b = add_command(sub, "bench", "training-step benchmarks: against PyTorch, weak scaling over "
                 "ranks, overlap under emulated networks, scaling predictions")
    add_bench_arguments(b)
    add_debug_flag(b)

    from .data_command import add_data_command
    add_data_command(sub)

    from .model_check.command import add_check_arguments
    c = add_command(sub, "check", "check a model before a job: each layer's backprop by finite "
                    "differences, 1 against 2 ranks, the summary")
    add_check_arguments(c)
    add_debug_flag(c)

    pl = add_command(sub, "plot", "plot a metrics JSONL file, or a --trace timeline, to PNG")
    pl.add_argument("metrics", metavar="FILE.jsonl", nargs="?",
                    help="metrics written by train --metrics-out")
    pl.add_argument("--trace", metavar="FILE.json", help="draw this timeline (a lane per rank)")
    pl.add_argument("-o", "--output", required=True, metavar="FILE.png", help="the image to write")
    add_debug_flag(pl)
    return p


def train_config(args):
    from .train.config import FIELD_NAMES, TrainConfig, coerce, load_toml
    values = {}
    if getattr(args, "config", None):
        values.update(load_toml(args.config))
    for name in FIELD_NAMES:
        if hasattr(args, name):
            values[name] = coerce(name, getattr(args, name), f"--{name.replace('_', '-')}")
    return TrainConfig(**values)


def _cmd_train(args) -> int:
    from .train.command import run_training
    run_training(lambda: train_config(args), getattr(args, "comm_timeout", None),
                 then_ignore_signals=True)
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
    from .train.config import TrainConfig
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


def _cmd_models(args) -> int:
    from .models.catalogue import catalogue, format_catalogue
    print(json.dumps(catalogue()) if args.json else format_catalogue())
    return 0


def _cmd_summary(args) -> int:
    from . import models
    if args.list:
        return _cmd_models(args)
    if not args.model:
        raise UsageError("summary: give --model NAME (or --list)")
    from .models.reference import parse_shape
    shape = parse_shape(args.input_shape) if args.input_shape else None
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
        raise UsageError("plot: give a metrics file or --trace, not both")
    if args.trace:
        plot_trace(args.trace, args.output)
    elif args.metrics:
        plot_metrics(args.metrics, args.output)
    else:
        raise UsageError("plot: give a metrics FILE.jsonl or --trace FILE.json")
    print(f"wrote {args.output}")
    return 0


def _cmd_check(args) -> int:
    from .model_check.command import run_check
    return run_check(args)


def _cmd_data(args) -> int:
    from .data_command import run_data
    return run_data(args)


def _report(exc, prefix: str, code: int, report: bool) -> int:
    """Agreed errors are printed by rank 0 alone; one only this rank saw (raised after the
    agreed start-up) is printed here, survives the abort (last_words.py), and ends every
    rank at once with the same code."""
    from .last_words import end_job
    if getattr(exc, "local", False):
        rank = launch_rank()
        end_job(f"{prefix} {f'rank {rank}: ' if rank else ''}{exc}", code)
    elif report:
        last_words.say(f"{prefix} {exc}")
    return code


def _interrupted(signum: int, rank: int) -> int:
    """Ctrl-C reaches every rank: rank 0 says so and its abort ends them all. Another rank
    gives it a moment first, then speaks and ends the job itself, for a signal that reached
    this rank alone (a scheduler's SIGTERM to one process). Exit 128 + the signal's number."""
    import signal
    from .last_words import end_job
    code = 128 + signum
    if rank:
        time.sleep(1.0)
    end_job(f"dptrain: {f'rank {rank}: ' if rank else ''}interrupted by "
            f"{signal.Signals(signum).name}", code)
    return code


COMMANDS = {"train": _cmd_train, "eval": _cmd_eval, "summary": _cmd_summary, "models": _cmd_models,
            "bench": _cmd_bench, "plot": _cmd_plot, "data": _cmd_data,
            "check": _cmd_check}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    interrupt_on_signals()      # before the heavy imports: a Ctrl-C there is an interruption
    dump_stacks_on_sigquit()

    def command() -> int:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    return run_reported(command, debug="--debug" in argv)


def run_reported(command, debug: bool = False) -> int:
    """Run ``command()`` and turn what it raises into the exit code (also for dptrain.fit).
    Usage errors and training failures are agreed on by every rank (the trainer reduces
    them), so rank 0 alone reports them and every rank exits with the same code. Anything
    else may have hit one rank only: that rank says why in one line (the traceback too with
    --debug) and ends the whole job with exit 3 (last_words.py: the line survives the abort)."""
    from .last_words import end_job
    rank = launch_rank()
    report = rank == 0
    try:
        return command()
    except UsageError as exc:
        if report and debug and getattr(exc, "detail", None):
            sys.stderr.write(exc.detail)     # a model file's own traceback (models/reference.py)
        return _report(exc, "dptrain: error:", EXIT_USAGE, report)
    except TrainingFailure as exc:
        return _report(exc, "dptrain: training failed:", EXIT_FAILURE, report)
    except OSError as exc:        # a file system that filled up or went away, on this rank
        if signal_received():
            return _interrupted(signal_received(), rank)
        return _report(on_this_rank_only(exc), "dptrain: failed:", EXIT_FAILURE, report)
    except KeyboardInterrupt as exc:
        import signal
        return _interrupted(getattr(exc, "signum", signal.SIGINT), rank)
    except Exception as exc:
        if signal_received():     # raised inside an import, which turned it into another error
            return _interrupted(signal_received(), rank)
        import traceback
        cause = exc.cause if isinstance(exc, RankFailure) else exc
        detail = "".join(traceback.format_exception(cause)) if debug else None
        if isinstance(exc, RankFailure):
            line = f"dptrain: {exc}"
        else:
            line = f"dptrain: rank {rank} failed: {type(exc).__name__}: {exc}"
        end_job(line + ("" if detail else " (--debug shows the traceback)"), EXIT_FAILURE, detail)
        return EXIT_FAILURE

if __name__ == "__main__":
    sys.exit(main())
