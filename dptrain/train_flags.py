"""The flags of ``dptrain train``, in the groups --help shows them in.

Every flag's default is left out of the parsed arguments (argparse.SUPPRESS) so that a
--config file can fill it; the help text shows TrainConfig's default instead, taken from
the dataclass so the two cannot disagree.
"""
from __future__ import annotations

import argparse
import dataclasses

from .comm.choice import preferences as comm_preferences
from .comm.timeout_policy import cli_value as cli_timeout
from .optim import registry as optim_registry
from .parallel import PROGRESS_MODES, SCHEDULES, schedules
from .train.config import TrainConfig, shown_value


def _progress_engines() -> list[str]:
    """The registered engines, auto's own (poll) first."""
    rest = [n for n in PROGRESS_MODES if n not in ("auto", "poll")]
    return ["poll"] + rest


def _described(schedule: str) -> str:
    """A schedule's name and, when it has one, its help in brackets."""
    text = schedules.get(schedule).help
    return f"{schedule} ({text})" if text else schedule


def _either(names: list[str]) -> str:
    return f"{', '.join(names[:-1])} or {names[-1]}"


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TrainConfig)}


def _mb_or_auto(text: str):
    if text == "auto":
        return text
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of MB or auto, got {text!r}") from None


def _adder(group):
    def add(flag, help, default_text=None, **kw):
        name = flag.lstrip("-").replace("-", "_")
        if default_text is None and name in _DEFAULTS:
            default_text = shown_value(_DEFAULTS[name])
        if default_text:
            help = f"{help} (default: {default_text})"
        group.add_argument(flag, default=argparse.SUPPRESS, help=help, **kw)
    return add


def add_train_flags(p, model_names) -> None:
    p.add_argument("--config", metavar="FILE.toml",
                   help="TOML file with the same keys as these flags (dashes or underscores, at "
                   "top level or under [train]); flags on the command line win")

    a = _adder(p.add_argument_group("data"))
    a("--dataset", "mnist5k, mnist:DIR, fashion-mnist:DIR, cifar10:DIR, npz:FILE or "
      "synthetic[:CxHxW[:N]]", metavar="NAME")
    a("--augment", "comma list of crop, flip, shift; or none", metavar="LIST")
    a("--sampler", "how global batches are drawn: uniform, obs (Online Batch Selection) or as "
      "(Adaptive Sampling)")
    a("--sampler-min-prob", "floor: mix sampling distributions with uniform (0 = as published)",
      type=float, metavar="P")
    a("--obs-pressure", "OBS selection pressure s", type=float, metavar="S")
    a("--obs-recompute-every", "OBS: recompute every sample's loss every N epochs (0: never)",
      type=int, metavar="N")
    a("--as-beta", "AS: re-estimate P every N counts (of --as-counter)", type=int, metavar="N")
    a("--as-delta-p", "AS: smoothing of P", type=float, metavar="D")
    a("--as-delta-q", "AS: smoothing of Q", type=float, metavar="D")
    a("--as-weighting", "AS: importance (weights 1/(N p q), unbiased, eq. 64-65) or none",
      metavar="importance|none")
    a("--as-bound", "AS: P from listing (sqrt of the raw bounds of the drawn samples, "
      "Algorithm 1) or eq67 (sqrt of the sum over the whole bin of bound / q)",
      metavar="listing|eq67")
    a("--as-refresh", "AS: bounds from the drawn samples only, or also from K samples of "
      "every bin re-sampled before each re-estimate of P", metavar="drawn|every-bin")
    a("--as-refresh-per-bin", "AS every-bin: K, samples re-sampled per bin (0: batch size / "
      "bins)", type=int, metavar="K")
    a("--as-counter", "AS: what --as-beta counts; samples is the listing read literally, "
      "which collapses P (docs/sampling.md)", metavar="batches|samples")

    a = _adder(p.add_argument_group("model"))
    a("--model", ", ".join(model_names) + " (dptrain models lists them), or your own: "
      "FILE.py:NAME or package.module:NAME, NAME(input_shape, num_classes) returning "
      "dptrain.nn layers (docs/own-model.md)", metavar="NAME")
    a("--num-classes", "classes of the model's output", type=int, metavar="K",
      default_text="1 + the largest training label, every class 0..K-1 present")
    a("--dtype", "float32 or float64 (parameters and activations)")

    a = _adder(p.add_argument_group("optimisation"))
    a("--epochs", "passes over the training set; with --max-steps alone, as many as the steps "
      "need", type=int, metavar="N", default_text="1, or what --max-steps needs")
    a("--max-steps", "stop after N optimiser steps (the first line says which limit ends the "
      "run)", type=int, metavar="N")
    a("--batch-size", "global mini-batch size, split over the ranks", type=int, metavar="N")
    a("--optimizer", optim_registry.choices_text(), metavar="NAME")
    a("--lr", "learning rate", type=float, default_text="the optimiser's own: 0.05 for momentum")
    a("--momentum", "momentum of momentum/nesterov", type=float,
      default_text="the optimiser's own: 0.9")
    a("--weight-decay", "L2 penalty added to every weight's gradient", type=float)
    a("--lr-schedule", "constant, step or cosine")
    a("--warmup-steps", "linear learning-rate warm-up over the first N steps", type=int,
      metavar="N")
    a("--lr-step-size", "step schedule: steps between decays", type=int, metavar="N")
    a("--lr-gamma", "step schedule: factor of each decay", type=float)
    a("--accumulate", "split each batch into N micro-batches; only the last communicates",
      type=int, metavar="N")
    a("--seed", "seed of initial weights, batches, augmentation and dropout", type=int)

    a = _adder(p.add_argument_group("parallelism"))
    a("--sync", "gradient synchronisation: auto (chosen from measured layer times and the "
      "measured link; with --bucket-mb auto, an overlapping plan is timed against blocking "
      "after a few steps and dropped when more than 5%% slower), "
      + _either([_described(s) for s in SCHEDULES]))
    a("--fc-replicate", "overlap-fc: which FC layers all-gather instead of all-reducing: auto, "
      "all, none")
    a("--bucket-mb", "gradient bucket size cap in MB, or auto (boundaries planned from measured "
      "layer times and the measured link)", type=_mb_or_auto, metavar="MB|auto")
    a("--reduction", "how each gradient bucket is summed when ranks share nodes: auto (per bucket "
      "size, the faster of the two measured at start-up), flat (MPI's own Allreduce over every "
      "rank), hierarchical (within each node, across the nodes per shard, within the node)")
    a("--comm-progress", "how overlapped communication progresses: auto (planned with --sync "
      "or --bucket-mb auto: poll, or priority where the plan predicts it faster; else poll: "
      "docs/performance.md), " + _either(_progress_engines()))
    a("--sync-bn", "batch-norm statistics over the global batch, so P ranks train what one "
      "does; --no-sync-bn keeps them per rank (cheaper, results then depend on the rank count)",
      action=argparse.BooleanOptionalAction, default_text="on for models with BatchNorm")
    a("--grad-dtype", "float32 or float16 (compressed Allreduce)")
    a("--cuda-graph", "off, or on: capture a full-batch GPU step (forward, loss, backward, "
      "reductions, update) once as a CUDA graph and replay it; other steps, and runs where "
      "capture cannot work, run eagerly and say why once. Not yet verified on a GPU, hence "
      "off by default (docs/performance.md)", metavar="off|on")
    a("--device", "cpu, gpu or auto")
    a("--allow-gpu-sharing", "let more ranks than GPUs share a node's GPUs", action="store_true")
    a("--comm", "how gradients travel: auto (NCCL on GPUs when CuPy has it, else CUDA-aware "
      "MPI, else MPI through pinned host buffers; MPI on CPUs), " + ", ".join(comm_preferences()[1:]))
    a("--threads", "BLAS threads per process", type=int, metavar="N",
      default_text="1, or SLURM_CPUS_PER_TASK / OMP_NUM_THREADS when set; more threads than "
      "free cores is slower, docs/performance.md")
    a("--net-emulate", "hold every collective until an alpha-beta network model says it would "
      "end", metavar="bw=10Gbit,lat=20us")
    a("--comm-timeout", "how long a collective may take before the job is ended (exit 3): "
      "auto (a step's collectives 20x the slowest step so far, at least 30 s; start-up, "
      "planning, evaluation, checkpoints and the end 300 s), auto:FLOOR (a floor of FLOOR s), "
      "or a fixed number of seconds for every collective (docs/errors.md)",
      type=cli_timeout, metavar="auto|auto:FLOOR|S")

    a = _adder(p.add_argument_group("checkpoints"))
    a("--checkpoint-dir", "write checkpoints here (rank 0, atomically)", metavar="DIR")
    a("--checkpoint-every", "N steps, or Ne epochs; 0: at the end only", metavar="N|Ne")
    a("--keep-checkpoints", "how many checkpoints to keep", type=int, metavar="K")
    a("--resume", "continue from the newest valid checkpoint in --checkpoint-dir",
      action="store_true")

    a = _adder(p.add_argument_group("output and evaluation"))
    a("--metrics-out", "append metrics as JSON lines here (docs/metrics.md)",
      metavar="FILE.jsonl")
    a("--log-every", "also report every N steps, on the console and in --metrics-out "
      "(0: per epoch only)", type=int, metavar="N")
    a("--eval-every", "evaluate on the test split every N epochs (the last epoch always); "
      "0: at the end only", type=int, metavar="N")
    a("--eval-every-steps", "also evaluate on the test split every N steps, within epochs too "
      "(0: per epoch only)", type=int, metavar="N")
    a("--stop-at-accuracy", "end the run after the first evaluation whose test accuracy "
      "is at least A, as at a normal end (checkpoint, --save-weights, exit 0)", type=float,
      metavar="A")
    a("--eval-train", "also evaluate the whole training set after each evaluated epoch "
      "(what sampler comparisons need; costs a forward pass over it)", action="store_true")
    a("--eval-batch-size", "batch size of evaluation passes (default: 128 on the CPU, 1000 "
      "on a GPU)", type=int, metavar="N")
    a("--save-weights", "write the final weights here", metavar="FILE.npz")
    a("--quiet", "no progress bar or per-epoch lines", action="store_true")

    debugging = p.add_argument_group("debugging")
    a = _adder(debugging)
    a("--trace", "write a Chrome trace of every rank's layers, updates and bucket reductions",
      metavar="FILE.json")
    a("--trace-steps", "steps to trace, from step 1", type=int, metavar="N")
    a("--check-replicas", "every N steps compare a hash of the parameters across ranks "
      "(0: never)", type=int, metavar="N")
    a("--skip-nonfinite", "skip up to K steps whose loss is NaN/inf instead of failing",
      type=int, metavar="K")
    a("--check-collectives", "cross-check that every rank posts the same collectives in the "
      "same order: strict (each collective, before it is posted) or a fingerprint every N "
      "steps and at the end; a mismatch ends the job with exit 3 naming it",
      metavar="off|strict|N", default_text="$DPTRAIN_CHECK_COLLECTIVES, else off")
    add_debug_flag(debugging)


def add_debug_flag(group) -> None:
    group.add_argument("--debug", action="store_true",
                       help="a rank that fails prints its Python traceback too")
