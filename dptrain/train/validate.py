"""Every numeric setting checked in one place: type, range and finiteness, with the flag named.

``argparse`` and TOML both accept ``nan`` and ``inf`` as floats, and a NaN passes every
``<`` and ``>`` test, so each bound is written as "the value lies in the range" and NaN
fails it. Called by TrainConfig.validate() before anything else.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UsageError


@dataclass(frozen=True)
class Rule:
    kind: type                   # int or float
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False        # lo < value instead of lo <= value
    hi_open: bool = False

    def holds(self, v) -> bool:
        return ((self.lo is None or (v > self.lo if self.lo_open else v >= self.lo))
                and (self.hi is None or (v < self.hi if self.hi_open else v <= self.hi)))

    def describe(self) -> str:
        if self.kind is int and self.hi is None and self.lo in (0, 1):
            return "positive" if self.lo == 1 else "non-negative"
        if self.hi is None and self.lo == 0:
            return "positive" if self.lo_open else "non-negative"
        show = (lambda v: str(int(v))) if self.kind is int else (lambda v: f"{v:g}")
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {show(self.lo)}"
        return (f"in {'(' if self.lo_open else '['}{show(self.lo)}, {show(self.hi)}"
                f"{')' if self.hi_open else ']'}")


POSITIVE, NON_NEGATIVE = Rule(int, 1), Rule(int, 0)
POSITIVE_REAL = Rule(float, 0, lo_open=True)
FRACTION = Rule(float, 0, 1)

# None is allowed where the field's default is None (the optimiser's own lr, no step limit...).
# Upper bounds keep arithmetic finite: lr x gamma^k, the watchdog's deadline (a value far past
# them overflowed into an internal error at some step instead of exit 2). A huge --lr or
# --weight-decay is left alone: it diverges, which the non-finite check reports (exit 3).
RULES = {
    "epochs": POSITIVE, "max_steps": POSITIVE, "batch_size": POSITIVE,
    "lr": POSITIVE_REAL, "momentum": Rule(float, 0, 1, hi_open=True),
    "weight_decay": Rule(float, 0), "warmup_steps": NON_NEGATIVE,
    "lr_step_size": POSITIVE, "lr_gamma": Rule(float, 0, 1, lo_open=True),   # a decay
    "sampler_min_prob": Rule(float, 0, 1, hi_open=True), "obs_pressure": Rule(float, 1),
    "obs_recompute_every": NON_NEGATIVE, "as_beta": POSITIVE,
    "as_delta_p": FRACTION, "as_delta_q": FRACTION, "as_refresh_per_bin": NON_NEGATIVE,
    "bucket_mb": POSITIVE_REAL, "accumulate": POSITIVE,
    "seed": Rule(int, 0, 2 ** 63, hi_open=True), "threads": Rule(int, 1, 4096),
    "eval_batch_size": POSITIVE, "eval_every": NON_NEGATIVE, "eval_every_steps": NON_NEGATIVE,
    "log_every": NON_NEGATIVE, "keep_checkpoints": POSITIVE,
    "trace_steps": POSITIVE, "comm_timeout": Rule(float, 1, 1e7), "check_replicas": NON_NEGATIVE,
    "skip_nonfinite": NON_NEGATIVE, "num_classes": Rule(int, 2),
    "stop_at_accuracy": Rule(float, 0, 1, lo_open=True),
}


# dptrain bench: the same kind of check for its own flags
# (counts capped where a typo would run for days: 10^6 steps, 10^4 rounds)
BENCH_RULES = {"batch_size": POSITIVE, "threads": Rule(int, 1, 4096), "steps": Rule(int, 1, 10 ** 6),
               "warmup": Rule(int, 0, 10 ** 6), "rounds": Rule(int, 1, 10 ** 4), "bucket_mb": POSITIVE_REAL,
               "node_gflops": POSITIVE_REAL}


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_number(name: str, value, rule: Rule | None = None) -> None:
    """Raise a UsageError naming the flag when ``value`` is not a finite number in range."""
    rule = rule or RULES[name]
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or (
            rule.kind is int and not isinstance(value, int)):
        raise UsageError(f"{flag(name)} must be {'an integer' if rule.kind is int else 'a number'}, "
                         f"got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{flag(name)} must be a finite number, got {value}")
    if not rule.holds(value):
        raise UsageError(f"{flag(name)} must be {rule.describe()}, got {value:g}"
                         if isinstance(value, float) else
                         f"{flag(name)} must be {rule.describe()}, got {value}")


# numbers that may also be the word "auto" (checked, with their own message, by the config)
MAY_BE_AUTO = {"bucket_mb", "comm_timeout"}


def check_numbers(cfg) -> None:
    for name, rule in RULES.items():
        if hasattr(cfg, name):
            value = getattr(cfg, name)
            if name in MAY_BE_AUTO and isinstance(value, str):
                continue
            check_number(name, value, rule)


def check_bench_numbers(args) -> None:
    for name, rule in BENCH_RULES.items():
        if hasattr(args, name):
            check_number(name, getattr(args, name), rule)


def estimate_params(name: str, input_shape, num_classes: int) -> int | None:
    """Parameters of a model from its layer list, before any array is allocated (the
    layers allocate in initialize()); None for an unknown zoo model or one that does not fit.
    A model from the user's code (FILE.py:NAME) is built here, so a broken one raises its
    ModelError (exit 2) before anything else is allocated."""
    from ..models import reference, zoo
    from ..nn import BatchNorm, Conv2D, Dense
    from ..nn.containers import as_chain, leaves
    if reference.is_reference(name):
        built = reference.build_layers(name, input_shape, num_classes)
        if not isinstance(built, list):               # a Sequential, already allocated
            return built.num_params()
    else:
        try:
            built = zoo.BUILDERS[name](tuple(input_shape), num_classes)
        except (KeyError, ValueError, TypeError):
            return None
    try:
        layers = leaves(as_chain(built))
    except (ValueError, TypeError):
        return None                       # reported where the model is built
    total = 0
    for layer in layers:                    # the leaves, inside residual blocks too
        if isinstance(layer, Dense):
            total += layer.n_in * layer.n_out + (layer.n_out if layer.bias else 0)
        elif isinstance(layer, Conv2D):
            total += layer.c_out * (layer.c_in * layer.kh * layer.kw + (1 if layer.bias else 0))
        elif isinstance(layer, BatchNorm):
            total += 2 * layer.n
    return total


def check_model_fits(name: str, input_shape, num_classes: int, dtype: str = "float32",
                     what: str | None = None) -> None:
    """Refuse a model whose parameters, gradients and two optimiser slots per parameter would
    not fit in memory (a label of 10^7 classes, an MLP on huge images), before building it."""
    from ..data.validate import check_fits
    params = estimate_params(name, input_shape, num_classes)
    if params is None:
        return                             # reported where the model is built
    try:
        check_fits(what or f"{name} with {num_classes:,} classes (--num-classes) on {'x'.join(map(str, input_shape))} "
                   f"inputs ({params:,} parameters)", 4.0 * params * (8 if dtype == "float64" else 4))
    except ValueError as exc:
        raise UsageError(str(exc)) from None
