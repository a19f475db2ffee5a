"""The checkpoint's ``meta`` document checked field by field before anything uses it.

A checkpoint whose zip container is intact but whose metadata is wrong (crafted, written by a
tool, edited by hand) is bad input: exit 2 naming the file and the field, never an exception
at the first step that reads the field. A damaged container stays checkpoint.py's business
(skipped with a warning for the one before).
"""
from __future__ import annotations

import math

from ..errors import UsageError

MAX_COUNT = 2 ** 62


class InvalidCheckpoint(UsageError):
    """A readable checkpoint whose metadata is not what dptrain writes (exit 2)."""


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _count(v) -> bool:
    return _is_int(v) and 0 <= v < MAX_COUNT


def _check(path, field: str, ok: bool, value, expected: str) -> None:
    if not ok:
        shown = repr(value)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        raise InvalidCheckpoint(f"{path}: checkpoint field {field!r} must be {expected}, got {shown}")


def check_position(path, meta) -> None:
    """What a resume needs besides check_meta's fields: where in training the checkpoint is
    (checkpointing.write() puts it there; checkpoint.save() alone does not)."""
    for name in ("epoch", "pos"):
        _check(path, name, _count(meta.get(name)), meta.get(name), "a non-negative integer")


def check_meta(path, meta) -> None:
    """Raise InvalidCheckpoint naming the first field that is missing or of the wrong type or
    range: those checkpoint.save() writes, and any other that is there."""
    _check(path, "meta", isinstance(meta, dict), meta, "a JSON object")
    _check(path, "step", _count(meta.get("step")), meta.get("step"), "a non-negative integer")
    for name in ("epoch", "pos"):
        if name in meta:
            _check(path, name, _count(meta[name]), meta[name], "a non-negative integer")
    _check(path, "config", isinstance(meta.get("config", {}), dict), meta.get("config"), "an object")
    _check(path, "sampler", isinstance(meta.get("sampler", {}), dict), meta.get("sampler"),
           "an object")
    opt = meta.get("optimizer")
    _check(path, "optimizer", isinstance(opt, dict), opt, "an object")
    _check(path, "optimizer.name", isinstance(opt.get("name"), str), opt.get("name"), "a name")
    for name in ("lr", "weight_decay"):
        value = opt.get(name)
        _check(path, f"optimizer.{name}", _is_number(value) and value >= 0, value,
               "a finite non-negative number")
    hyper = opt.get("hyper", {})
    _check(path, "optimizer.hyper", isinstance(hyper, dict), hyper, "an object")
    for key, value in hyper.items():
        _check(path, f"optimizer.hyper.{key}", isinstance(value, bool) or _is_number(value),
               value, "a finite number or a boolean")
    steps = opt.get("t", {})
    _check(path, "optimizer.t", isinstance(steps, dict), steps, "an object")
    for key, value in steps.items():
        _check(path, f"optimizer.t.{key}", _count(value), value, "a non-negative integer")
    if "model_fingerprint" in meta:
        from ..models.structure import is_fingerprint
        _check(path, "model_fingerprint", is_fingerprint(meta["model_fingerprint"]),
               meta["model_fingerprint"], "a model fingerprint (layers, arrays, digest)")
    plan = meta.get("comm_plan")
    if plan is not None:
        from ..parallel.planner import Plan
        try:
            Plan.from_dict(plan)
            ok = isinstance(plan, dict) and isinstance(plan["schedule"], str) \
                and all(_count(i) for g in plan["groups"] for i in g)
        except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
            ok = False
        _check(path, "comm_plan", ok, plan, "a communication plan (schedule, groups of layers)")
