"""Where training stands, as a checkpoint stores it, and how a run resumes from one.

The position is (global step, epoch, step within the epoch); with the sampler's state and
the configuration it is all a resume needs to continue bitwise as if never stopped.
"""
from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..input_files import NotRegularFile
from . import checkpoint, checkpoint_check


@dataclass
class Position:
    step: int = 0              # global steps done
    epoch: int = 0             # epochs done
    pos: int = 0               # steps done within the current epoch
    resumed_from: Path | None = None
    comm_plan: dict | None = None   # the communication plan in force (parallel/autotune.py)
    epoch_sums: dict | None = None  # mid-epoch: the epoch's metrics so far (metrics.EpochLog)


def resume_position(cfg, model, opt, sampler, is_root: bool, total_steps: int | None = None) -> Position:
    """Restore model, optimiser and sampler from the newest valid checkpoint in place
    (``total_steps``: this run's length, which a cosine learning-rate curve spans)."""
    warn = (lambda m: print(m, file=sys.stderr)) if is_root else (lambda m: None)
    found = checkpoint.list_checkpoints(cfg.checkpoint_dir)
    try:
        ckpt = checkpoint.latest(cfg.checkpoint_dir, warn=warn)
    except NotRegularFile as exc:
        raise UsageError(f"--resume: {exc}") from None
    if ckpt is None:
        if found:
            raise UsageError(f"--resume: no usable checkpoint in {cfg.checkpoint_dir} "
                             f"(all {len(found)} corrupt)")
        raise UsageError(f"--resume: no checkpoint in {cfg.checkpoint_dir}")
    try:
        from .checkpoint_meta import check_position
        check_position(ckpt["path"], ckpt["meta"])
        config = dataclasses.asdict(cfg)
        from .model_record import check_same_model
        if check_same_model(f"checkpoint {ckpt['path']}", ckpt["meta"], cfg.model, model):
            config["model"] = ckpt["meta"]["config"].get("model")   # same structure: moved is fine
        checkpoint.check_compatible(ckpt, config)
        checkpoint_check.check_complete(ckpt, model, opt, sampler)
        if total_steps is not None:
            checkpoint_check.check_lr_curve(ckpt, cfg, sampler.steps_per_epoch(), total_steps)
        checkpoint.restore(ckpt, model, opt)
        sampler.load_state_dict(ckpt["meta"]["sampler"])
    except (checkpoint.CheckpointError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"{ckpt['path']}: {exc}" if str(ckpt["path"]) not in str(exc)
                         else str(exc)) from None
    meta = ckpt["meta"]
    sums = meta.get("epoch_sums")
    return Position(meta["step"], meta["epoch"], meta["pos"], ckpt["path"], meta.get("comm_plan"),
                    sums if isinstance(sums, dict) and meta["pos"] else None)


def write(cfg, position: Position, model, opt, sampler, comm_plan: dict | None = None) -> None:
    """Rank 0 only: the checkpoint of ``position`` (atomic, the oldest beyond --keep pruned)."""
    from .model_record import record
    meta = {"epoch": position.epoch, "pos": position.pos, **record(model, cfg.model),
            "config": dataclasses.asdict(cfg), "sampler": sampler.state_dict(),
            "rng": {"seed": cfg.seed, "step": position.step}, "comm_plan": comm_plan,
            "epoch_sums": position.epoch_sums if position.pos else None}
    checkpoint.save(cfg.checkpoint_dir, position.step, model, opt, meta,
                    keep=cfg.keep_checkpoints)
