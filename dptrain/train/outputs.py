"""Outputs checked before training starts, so nothing is found unwritable after hours of work.

Rank 0 writes the metrics, weights, trace and checkpoints, so rank 0 checks them; every
rank checks the checkpoint directory, which every rank reads on --resume. The checks run
inside the agreed start-up (startup.py): a problem on any rank stops every rank with exit 2.
"""
from __future__ import annotations

import glob
import os
import re
import socket

from ..errors import UsageError
from . import checkpoint
from .lock import LOCK_NAME, DirectoryLock, Locks, OutputLock, owner_alive
from .setup import check_writable


def check(cfg, is_root: bool) -> None:
    if cfg.checkpoint_dir:
        checkpoint.check_directory(cfg.checkpoint_dir)
        if is_root:      # the others would see rank 0 itself holding it once it is past here
            DirectoryLock(cfg.checkpoint_dir).check_free()
        found = checkpoint.list_checkpoints(cfg.checkpoint_dir)
        if found and not cfg.resume:
            # a fresh run would overwrite them step for step and prune the rest
            raise UsageError(f"--checkpoint-dir {cfg.checkpoint_dir} holds checkpoints of another "
                             f"run ({found[-1].name}); add --resume to continue it, or give an "
                             "empty directory")
    if not is_root:
        return
    check_writable(cfg.metrics_out, "--metrics-out")
    check_writable(cfg.save_weights, "--save-weights")
    check_writable(cfg.trace, "--trace")
    named = [(flag, path) for flag, path in (("--metrics-out", cfg.metrics_out),
                                             ("--save-weights", cfg.save_weights),
                                             ("--trace", cfg.trace)) if path]
    for i, (flag, path) in enumerate(named):           # one output must not overwrite another
        for other, other_path in named[i + 1:]:
            if os.path.abspath(path) == os.path.abspath(other_path):
                raise UsageError(f"{flag} and {other} are the same file {path}")
    for flag, path in named:
        OutputLock(path, flag).check_free()            # not another live run's file
        _check_not_checkpoint_named(cfg.checkpoint_dir, flag, path)
    sweep_weights_temporary(cfg.save_weights)
    if cfg.metrics_out and _non_empty(cfg.metrics_out) and not cfg.resume:
        # another run's lines would be interleaved with this one's, indistinguishably
        raise UsageError(f"--metrics-out {cfg.metrics_out}: the file exists and holds another "
                         "run's metrics; give a new file or remove it (--resume continues that "
                         "run only with its --checkpoint-dir)")


def sweep_weights_temporary(path: str | None) -> None:
    """Remove ``FILE.tmp.<pid>.npz`` left by a killed run's --save-weights (its pid is gone)."""
    if not path:
        return
    for tmp in glob.glob(glob.escape(path) + ".tmp.*.npz"):
        m = re.fullmatch(r"\.tmp\.(\d+)\.npz", tmp[len(path):])
        if m and not owner_alive({"pid": int(m.group(1)), "host": socket.gethostname()}):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _non_empty(path: str) -> bool:
    try:
        return os.path.getsize(path) > 0
    except OSError:
        return False


def _check_not_checkpoint_named(directory: str | None, flag: str, path: str) -> None:
    """An output inside the checkpoint directory named like a checkpoint, a temporary of
    one or the lock would be taken (and pruned, or swept) as one."""
    if not directory or os.path.dirname(os.path.abspath(path)) != os.path.abspath(directory):
        return
    name = os.path.basename(path)
    if checkpoint.is_checkpoint_name(name) or name == LOCK_NAME:
        raise UsageError(f"{flag} {path}: inside --checkpoint-dir {directory} and named like "
                         "its checkpoints (ckpt-<step>.npz, .ckpt-*.tmp, .dptrain.lock); give "
                         "another name")


def lock_outputs(cfg, warn) -> Locks | None:
    """Rank 0: take the locks of the checkpoint directory and of every output file, and sweep
    the temporary files that killed or failed checkpoint writes left (no other run can be
    writing them: we hold the lock). A live owner of any of them refuses the run (exit 2)."""
    locks = Locks()
    if cfg.checkpoint_dir:
        locks.take(DirectoryLock(cfg.checkpoint_dir), warn)
        checkpoint.sweep_temporary(cfg.checkpoint_dir)
    for flag, path in (("--metrics-out", cfg.metrics_out), ("--save-weights", cfg.save_weights),
                       ("--trace", cfg.trace)):
        if path:
            locks.take(OutputLock(path, flag), warn)
    return locks
