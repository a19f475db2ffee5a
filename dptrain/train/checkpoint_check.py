"""Before a resume restores anything: is the checkpoint complete, and does it continue this run?

A checkpoint lacking part of the state a bitwise resume needs would still load: absent
momentum buffers restart at zero, an absent sampler table or batch-norm statistics at their
initial values, and the run silently follows another trajectory. Every part is checked
against what this run's model, optimiser and sampler hold, and a missing or extra part is
refused (CheckpointError, exit 2) with the checkpoint and the part named.
"""
from __future__ import annotations

import numpy as np

from . import run_length
from .checkpoint import CheckpointError

# what a checkpoint written before these sampler entries existed resumes with
OPTIONAL_SAMPLER_KEYS = ("bounds", "pending")
META_KEYS = ("step", "epoch", "pos", "config", "optimizer", "sampler", "rng")


def _names(keys, limit=4) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def check_complete(ckpt: dict, model, opt, sampler) -> None:
    path = ckpt["path"]
    meta = ckpt["meta"]
    absent = [k for k in META_KEYS if k not in meta]
    if absent:
        raise CheckpointError(f"{path}: incomplete checkpoint: no {_names(absent)} in its metadata")
    own = model.state_dict()
    missing, extra = set(own) - set(ckpt["model"]), set(ckpt["model"]) - set(own)
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint: model arrays {_names(missing)} "
                              "are missing")
    if extra:
        raise CheckpointError(f"{path}: checkpoint holds model arrays {_names(extra)} that "
                              "this model does not have")
    _check_optimizer(path, meta, ckpt["optim"], own, {k for k, _ in model.named_params()}, opt)
    _check_sampler(path, meta["sampler"], sampler.state_dict())
    rng = meta["rng"]
    if not isinstance(rng, dict) or rng.get("step") != meta["step"] \
            or rng.get("seed") != meta["config"].get("seed"):
        raise CheckpointError(f"{path}: its RNG state {rng!r} is not that of step {meta['step']} "
                              f"with seed {meta['config'].get('seed')!r}")


def _check_optimizer(path, meta, arrays: dict, params: dict, parameters: set, opt) -> None:
    t = meta["optimizer"].get("t") if isinstance(meta["optimizer"], dict) else None
    if not isinstance(t, dict):
        raise CheckpointError(f"{path}: incomplete checkpoint: no optimiser step counts")
    trained = set(t) | set(arrays)
    if trained and parameters - trained:     # one step updates every parameter: all or none
        raise CheckpointError(f"{path}: incomplete checkpoint: no optimiser state for "
                              f"{_names(parameters - trained)}")
    if trained - parameters:
        raise CheckpointError(f"{path}: checkpoint holds optimiser state for "
                              f"{_names(trained - parameters)}, which this model does not have")
    for key in sorted(trained):
        slots = arrays.get(key, {})
        missing = [s for s in opt.slot_names if s not in slots]
        extra = [s for s in slots if s not in opt.slot_names]
        if key not in t or missing:
            what = "step count" if key not in t else "array(s) " + ", ".join(missing)
            raise CheckpointError(f"{path}: incomplete checkpoint: optimiser {what} of {key} "
                                  f"missing ({meta['optimizer'].get('name')} keeps "
                                  f"{', '.join(('t',) + tuple(opt.slot_names))} per parameter)")
        if extra:
            raise CheckpointError(f"{path}: checkpoint holds optimiser array(s) "
                                  f"{', '.join(extra)} of {key}, which {opt.name} does not keep")
        for s, value in slots.items():
            if np.shape(value) != np.shape(params[key]):
                raise CheckpointError(f"{path}: optimiser array {s} of {key} has shape "
                                      f"{np.shape(value)}, the parameter {np.shape(params[key])}")


def _check_sampler(path, saved, live: dict) -> None:
    if not isinstance(saved, dict) or saved.get("name") != live["name"]:
        name = saved.get("name") if isinstance(saved, dict) else None
        raise CheckpointError(f"{path}: its sampler state is for {name!r}, this run's sampler "
                              f"is {live['name']!r}")
    missing = set(live) - set(saved) - set(OPTIONAL_SAMPLER_KEYS)
    extra = set(saved) - set(live)
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint: sampler state {_names(missing)} "
                              "is missing")
    if extra:
        raise CheckpointError(f"{path}: checkpoint holds sampler state {_names(extra)} that "
                              f"the {live['name']} sampler does not keep")
    for key, value in live.items():
        if isinstance(value, np.ndarray) and key in saved \
                and np.shape(saved[key]) != value.shape:
            raise CheckpointError(f"{path}: sampler state {key} has shape "
                                  f"{np.shape(saved[key])}, this data set needs {value.shape}")


def check_lr_curve(ckpt: dict, cfg, steps_per_epoch: int, total_steps: int) -> None:
    """--lr-schedule cosine spans the whole run: a resume that changes the run's length
    (--epochs, --max-steps) would bend the curve the checkpoint was trained on. The step
    and warm-up schedules do not depend on the length, so those runs may be extended."""
    if cfg.lr_schedule != "cosine":
        return
    saved = ckpt["meta"]["config"]
    before = run_length.resolve(saved.get("epochs"), saved.get("max_steps"), steps_per_epoch)
    if before.total_steps != total_steps:
        flags = lambda c: " ".join(f"--{k.replace('_', '-')} {v}" for k in ("epochs", "max_steps")
                                   if (v := c.get(k) if isinstance(c, dict) else getattr(c, k))
                                   is not None) or "the default length"
        raise CheckpointError(
            f"{ckpt['path']}: checkpoint does not match this run: --lr-schedule cosine decays "
            f"over its run's {before.total_steps} steps ({flags(saved)}), this run has "
            f"{total_steps} ({flags(cfg)}), which changes the learning-rate curve; resume with "
            "the checkpoint's --epochs/--max-steps")
