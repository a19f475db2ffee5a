"""Checkpoints: everything needed to continue training bit for bit, written atomically.

One ``.npz`` per checkpoint, ``ckpt-<step>.npz`` in the checkpoint directory:
``model/<layer>.<name>`` (parameters and buffers), ``optim/<param>/<slot>`` (optimiser
state arrays) and ``meta``, a JSON document with the format version, the step, the
epoch and the position in it, the configuration, the optimiser's scalars, the sampler
state and the RNG state. dptrain's randomness is counter-based, keyed by (seed, step,
sample index), so the seed and the step *are* the RNG state.

Writing goes to a temporary file that is fsync'ed and renamed, then the directory is
fsync'ed: a crash leaves either the previous checkpoints or the new one, never half of
one. The zip container's CRCs catch a checkpoint damaged later; ``latest()`` skips it
with a warning and takes the one before.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np

from ..input_files import NotRegularFile, open_input

FORMAT_VERSION = 1
_NAME = re.compile(r"^ckpt-(\d+)\.npz$")

# Configuration keys that change the trajectory: a resume must not change them.
TRAJECTORY_KEYS = ("model", "dataset", "batch_size", "optimizer", "lr", "momentum",
                   "weight_decay", "lr_schedule", "warmup_steps", "lr_step_size", "lr_gamma",
                   "augment", "sampler", "sampler_min_prob", "obs_pressure", "obs_recompute_every",
                   "as_beta", "as_delta_p", "as_delta_q", "as_weighting", "seed", "dtype",
                   "sync_bn", "accumulate", "grad_dtype", "num_classes", "as_bound",
                   "as_refresh", "as_refresh_per_bin", "as_counter")
# what a checkpoint written before a key existed ran with
ADDED_KEYS = {"as_bound": "listing", "as_refresh": "drawn", "as_refresh_per_bin": 0,
              "as_counter": "batches"}


class CheckpointError(ValueError):
    """A checkpoint that cannot be used (corrupt, another format, another run)."""


def check_directory(directory: str) -> None:
    """Refuse up front (exit 2) a --checkpoint-dir that could not be written."""
    from ..errors import UsageError
    path = os.path.abspath(directory)
    parent = path if os.path.isdir(path) else os.path.dirname(path)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"--checkpoint-dir {directory}: exists and is not a directory")
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
        raise UsageError(f"--checkpoint-dir {directory}: {parent} is missing or not writable")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(directory, step: int, model, opt, meta: dict, keep: int = 3) -> Path:
    """Write ckpt-<step>.npz atomically and keep the newest ``keep`` checkpoints."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    scalars = {}
    for key, slots in opt_state["state"].items():
        for slot, value in slots.items():
            if slot == "t":
                scalars[key] = int(value)
            else:
                arrays[f"optim/{key}/{slot}"] = value
    doc = dict(meta, version=FORMAT_VERSION, step=int(step),
               optimizer={"name": opt_state["name"], "lr": opt_state["lr"],
                          "weight_decay": opt_state["weight_decay"], "hyper": opt_state["hyper"],
                          "t": scalars})
    # array-valued sampler state (loss tables, distributions) goes beside the parameters
    sampler = doc.get("sampler", {})
    for key in [k for k, v in sampler.items() if isinstance(v, np.ndarray)]:
        arrays[f"sampler/{key}"] = sampler.pop(key)
    arrays["meta"] = np.frombuffer(json.dumps(doc).encode(), dtype=np.uint8)
    final = directory / f"ckpt-{step:09d}.npz"
    tmp = directory / f".ckpt-{step:09d}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException as exc:
        try:
            tmp.unlink(missing_ok=True)  # a full disk or a signal: the previous ones stay intact
        except OSError:
            pass                         # a directory gone read-only: the write's error counts
        if isinstance(exc, OSError):     # a failed write() names no file: name the checkpoint
            raise OSError(exc.errno, exc.strerror or str(exc), str(final)) from exc
        raise
    _fsync_dir(directory)
    if keep > 0:
        prune(directory, keep)
    return final


def prune(directory, keep: int) -> None:
    """Remove all but the newest ``keep`` checkpoints, counting only files that are
    checkpoints (their metadata names their step): a stray file named like a later
    checkpoint must neither be kept in place of the real ones nor removed."""
    written = [p for p in list_checkpoints(directory) if is_checkpoint(p)]
    for old in written[:-keep]:
        try:
            old.unlink(missing_ok=True)
        except OSError:
            pass                         # kept: a checkpoint too many is no loss


def is_checkpoint_name(name: str) -> bool:
    """ckpt-<step>.npz, or the temporary file of one being written."""
    return bool(_NAME.match(name)) or (name.startswith(".ckpt-") and name.endswith(".tmp"))


def is_checkpoint(path) -> bool:
    """A dptrain checkpoint whose metadata says it is the step its name says (only the
    metadata is read, not the arrays)."""
    m = _NAME.match(Path(path).name)
    if not m or not Path(path).is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(z["meta"].tobytes().decode())
        return meta.get("version") == FORMAT_VERSION and meta.get("step") == int(m.group(1))
    except Exception:
        return False


def sweep_temporary(directory) -> int:
    """Remove the temporary files of writes that were killed (the caller holds the directory's
    lock, so no other run is writing them); returns how many."""
    directory = Path(directory)
    swept = 0
    for p in directory.glob(".ckpt-*.tmp") if directory.is_dir() else []:
        try:
            p.unlink()
            swept += 1
        except OSError:
            pass
    return swept


def list_checkpoints(directory) -> list[Path]:
    """Checkpoint files, oldest first (temporary files of unfinished writes are ignored)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def read(path) -> dict:
    """{'meta': dict, 'model': {...}, 'optim': {...}}; CheckpointError if unusable."""
    try:
        with open_input(path) as f, np.load(f, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}           # reading every member checks its CRC
        meta = json.loads(arrays.pop("meta").tobytes().decode())
    except NotRegularFile:
        raise                           # not a damaged checkpoint: something else put there
    except Exception as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint ({type(exc).__name__}: {exc})") from None
    version = meta.get("version") if isinstance(meta, dict) else None
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {version!r}, "
                              f"this dptrain reads {FORMAT_VERSION}")
    from .checkpoint_meta import check_meta
    check_meta(path, meta)                  # an intact file with wrong metadata: exit 2
    model = {k[len("model/"):]: v for k, v in arrays.items() if k.startswith("model/")}
    meta.setdefault("sampler", {}).update(
        {k[len("sampler/"):]: v for k, v in arrays.items() if k.startswith("sampler/")})
    optim = {}
    for k, v in arrays.items():
        if k.startswith("optim/"):
            key, slot = k[len("optim/"):].rsplit("/", 1)
            optim.setdefault(key, {})[slot] = v
    return {"path": Path(path), "meta": meta, "model": model, "optim": optim}


def latest(directory, warn=print) -> dict | None:
    """The newest readable checkpoint, skipping (with a warning) corrupt ones; None if none."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return read(path)
        except CheckpointError as exc:
            warn(f"dptrain: warning: skipping {exc}")
    return None


def check_compatible(ckpt: dict, config: dict) -> None:
    """Refuse a checkpoint from a run whose model or configuration differs."""
    saved = ckpt["meta"].get("config", {})
    diffs = [f"{k}={saved.get(k)!r} (now {config.get(k)!r})"
             for k in TRAJECTORY_KEYS if saved.get(k, ADDED_KEYS.get(k)) != config.get(k)]
    if diffs:
        raise CheckpointError(f"{ckpt['path']}: checkpoint does not match this run: "
                              + ", ".join(diffs))


def restore(ckpt: dict, model, opt) -> None:
    """Load parameters, buffers and optimiser state in place."""
    model.load_state_dict(ckpt["model"])
    o = ckpt["meta"]["optimizer"]
    state = {key: dict(slots, t=o["t"][key]) for key, slots in ckpt["optim"].items()}
    for key, t in o["t"].items():                 # slot-less optimisers (plain SGD) keep t only
        state.setdefault(key, {"t": t})
    opt.load_state_dict({"name": o["name"], "lr": o["lr"], "weight_decay": o["weight_decay"],
                         "hyper": o["hyper"], "state": state})
