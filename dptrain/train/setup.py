"""Building blocks of a run: output checks, weights files, model, optimiser, backend.

All raise UsageError (exit 2) naming the culprit.
"""
from __future__ import annotations

import os

import numpy as np

from .. import backend, data, models, optim
from ..backend import DeviceError
from ..errors import UsageError
from .config import TrainConfig


def check_writable(path: str | None, what: str) -> None:
    """Refuse up front an output file whose directory is missing or read-only."""
    if not path:
        return
    if os.path.isdir(path):
        raise UsageError(f"{what} {path}: is a directory (give a file name)")
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{what} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{what} {path}: directory {directory} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise UsageError(f"{what} {path}: the file exists and is not writable")


def save_weights(model, path: str, spec: str | None = None) -> None:
    """'<layer-index>.<param>' arrays (buffers too) in an .npz, written atomically, with the
    model's reference and structure as the array 'meta' (model_record.py)."""
    from .model_record import WEIGHTS_META, weights_meta
    tmp = f"{path}.tmp.{os.getpid()}.npz"
    try:
        np.savez(tmp, **model.state_dict(), **{WEIGHTS_META: weights_meta(model, spec or model.name)})
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)                 # a full disk or a signal leaves no stray file
        raise


def load_weights(model, path: str, spec: str | None = None) -> None:
    """Load a --save-weights file; a file that records another model's structure is refused
    naming the first difference (model_record.py)."""
    from .model_record import check_same_model, read_weights_meta
    try:
        state = data.readers.load_npz(path)
    except data.DataError as exc:
        raise UsageError(f"weights {exc}") from None
    check_same_model(f"weights {path}", read_weights_meta(path, state), spec or model.name, model)
    for name, value in state.items():
        if value.dtype.kind != "f":
            raise UsageError(f"{path}: array {name!r} is {value.dtype}, not floating point")
        if not np.isfinite(value).all():
            raise UsageError(f"{path}: array {name!r} holds NaN or infinite values")
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None


def build_model(cfg: TrainConfig, ds: data.Dataset):
    try:
        from .validate import check_model_fits           # estimated before allocating
        check_model_fits(cfg.model, ds.input_shape, ds.num_classes, cfg.dtype)
        return models.get(cfg.model, ds.input_shape, ds.num_classes, seed=cfg.seed)
    except UsageError:
        raise                    # a ModelError keeps its traceback for --debug
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def build_optimizer(cfg: TrainConfig, model):
    try:
        return optim.get(cfg.optimizer, model, lr=cfg.lr, momentum=cfg.momentum,
                         weight_decay=cfg.weight_decay or None)
    except (ValueError, TypeError) as exc:
        raise UsageError(f"--optimizer {cfg.optimizer}: {exc}") from None


def setup_backend(cfg: TrainConfig, local_rank: int = 0, local_size: int = 1) -> None:
    backend.set_dtype(cfg.dtype)
    backend.set_threads(cfg.threads)
    try:
        backend.use_device(cfg.device, local_rank, local_size, cfg.allow_gpu_sharing)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None
