"""``dptrain.fit``: the one entry point of the Python API, which runs what ``dptrain train``
runs (docs/api.md). (Not ``dptrain.train``: that name is the subpackage dptrain/train/, which
Python binds on the package as soon as any of its modules is imported.)

A script calls ``dptrain.fit(model=..., dataset=..., **options)`` and is started as
``mpiexec -n P python script.py`` (or plainly, as one rank). The call goes through the
command line's own path (train/command.py, cli.run_reported): the options become a TrainConfig
inside the agreed start-up, so a bad option, file or array is one ``dptrain: error:`` line
from rank 0 and exit 2 on every rank before training; a failure during training is exit 3;
metrics, checkpoints, resume, signals, the watchdog and the collective-order check behave as
for the command. A run that ends with another exit code than 0 raises ``JobEnded`` (a
SystemExit with that code) on every rank, after the line was printed; a failure one rank
alone saw ends the whole job from that rank (MPI_Abort), as the command does.

Standard library only at import: ``import dptrain`` stays light.
"""
from __future__ import annotations

import numbers
import os
import signal
import time
from dataclasses import dataclass, field

from .errors import UsageError

__all__ = ["fit", "TrainResult", "JobEnded"]


class JobEnded(SystemExit):
    """Raised by ``fit`` on every rank when the run ends with a non-zero exit code (2: bad
    input, 3: a failure during training, 128 + N: signal N), after rank 0 printed the one line
    that says why. Uncaught, the script exits with ``code``, as ``dptrain train`` would."""


@dataclass
class TrainResult:
    """What ``fit`` returns on every rank when the run ends well (exit code 0).

    ``metrics``: the last epoch's numbers as Python numbers (``epochs``, ``steps``,
    ``train_loss`` and, when the test split was evaluated, ``test_loss``, ``test_accuracy``);
    ``step``: the optimiser steps taken in all (a resumed run counts from the start);
    ``rank``/``ranks``: this process's rank and the job's rank count; ``model``: this rank's
    replica of the trained model (equal on every rank); ``config``: the effective TrainConfig
    (defaults resolved); the paths written, or None when not asked for: ``metrics_out``,
    ``save_weights``, ``checkpoint_dir`` and ``checkpoint`` (the newest checkpoint file there,
    as this rank sees the directory); ``resumed_from``: the checkpoint a resume started from;
    ``stopped``: the line printed when a SIGTERM/SIGINT stopped the run early (else None)."""
    metrics: dict
    step: int
    rank: int
    ranks: int
    model: object = field(repr=False)
    config: object = field(repr=False)
    metrics_out: str | None = None
    save_weights: str | None = None
    checkpoint_dir: str | None = None
    checkpoint: str | None = None
    resumed_from: str | None = None
    stopped: str | None = None


def fit(model=None, dataset=None, *, config: str | os.PathLike | None = None,
        debug: bool = False, **options) -> TrainResult:
    """Train ``model`` on ``dataset`` data-parallel over the ranks of this MPI job.

    ``model``: a zoo name (``"lenet5"``), a reference ``"FILE.py:NAME"`` or
    ``"package.module:NAME"``, or a callable ``builder(input_shape, num_classes)`` returning
    ``dptrain.nn`` layers (registered with ``dptrain.models.reference.register``).
    ``dataset``: a data-set name as for ``--dataset`` (``"mnist5k"``, ``"npz:FILE"``, ...),
    the arrays ``(x, y)`` or ``(x, y, x_test, y_test)`` or a dict with those keys
    (``dptrain.data.from_arrays`` says what they may be), or a ``dptrain.data.Dataset``.
    ``config``: a TOML file as for ``--config``; ``options`` are the train flags by their
    Python names (``batch_size=64``, ``checkpoint_dir="ckpt"``, ``resume=True``, ...: the
    fields of ``dptrain.train.config.TrainConfig``) and win over the file, as flags do.
    ``model``/``dataset`` None: the config file's, else the defaults (thesis-cnn, mnist5k).
    ``debug``: a failing rank prints its traceback too (``--debug``).

    Returns a TrainResult on every rank; raises JobEnded (SystemExit) with the command's
    exit code otherwise. MPI is finalized at the end of a run on several ranks, as the command
    does, so a process trains once under mpiexec.
    """
    from .cli import run_reported
    from .interrupts import interrupt_on_signals
    previous = _signal_handlers()
    interrupt_on_signals()          # the command's first line: a Ctrl-C from here on is exit 130
    _start_up_counts_from_process_start()
    finished = []
    try:
        def command() -> int:
            from .train.command import run_training
            _refuse_second_run_after_finalize()
            finished.append(run_training(lambda: _config(model, dataset, config, options),
                                         options.get("comm_timeout")))
            return 0
        code = run_reported(command, debug=debug)
    finally:
        _restore(previous)
    if code:
        raise JobEnded(code)
    return _result(finished[0])


def _config(model, dataset, config, options):
    """The TrainConfig of the call, built as the command builds it from flags and --config;
    every problem a UsageError (agreed over the ranks by the caller)."""
    from .train.config import FIELD_NAMES, TrainConfig, coerce, load_toml
    values = load_toml(os.fspath(config)) if config else {}
    for name, value in options.items():
        if name not in FIELD_NAMES:
            from .suggest import did_you_mean
            raise UsageError(f"fit(): unknown option {name!r}"
                             f"{did_you_mean(name, sorted(FIELD_NAMES))} (the options are "
                             "TrainConfig's fields, the train flags' Python names)")
        values[name] = coerce(name, _plain(value), f"fit({name}=...)")
    if model is not None:
        values["model"] = _model_spec(model)
    if dataset is not None:
        values["dataset"] = _dataset_spec(dataset)
    return TrainConfig(**values)


def _model_spec(model) -> str:
    if isinstance(model, str):
        return model
    if callable(model):
        from .models import reference
        try:
            return reference.register(model)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"fit(model=...): {exc}") from None
    raise UsageError(f"fit(model=...): expected a model name, 'FILE.py:NAME' or a builder "
                     f"callable, got {type(model).__name__}")


def _dataset_spec(dataset) -> str:
    from .data import in_memory
    if isinstance(dataset, str):
        return dataset
    if isinstance(dataset, in_memory.Dataset):
        return in_memory.register_dataset(dataset)
    if isinstance(dataset, dict):
        unknown = sorted(set(dataset) - {"x", "y", "x_test", "y_test"})
        if unknown or not {"x", "y"} <= set(dataset):
            raise UsageError(f"fit(dataset=...): a dict needs the keys x, y and optionally "
                             f"x_test, y_test; got {sorted(dataset)}")
        return in_memory.register(**dataset)
    if isinstance(dataset, (tuple, list)) and len(dataset) in (2, 4):
        return in_memory.register(*dataset)
    raise UsageError("fit(dataset=...): expected a data-set name, (x, y), (x, y, x_test, "
                     f"y_test), a dict of those arrays or a dptrain.data.Dataset; got "
                     f"{type(dataset).__name__}" + (f" of {len(dataset)}" if
                                                    isinstance(dataset, (tuple, list)) else ""))


def _plain(value):
    """NumPy scalars as the Python numbers a flag would give (np.int64(64) -> 64)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _start_up_counts_from_process_start() -> None:
    """A rank waiting for its peers at start-up allows them twice its own start-up time
    (phase_watch.py), counted from the command's start. A script's start is the process's:
    what it did before fit (reading its data) is start-up time, as the command's reading is."""
    from . import phase_watch
    try:
        with open("/proc/self/stat") as f:          # field 22: start, in ticks after boot
            started_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        alive = uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return                                        # not Linux: counted from the import
    phase_watch.STARTED = min(phase_watch.STARTED, time.monotonic() - max(alive, 0.0))


def _refuse_second_run_after_finalize() -> None:
    import sys
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is not None and MPI.Is_finalized():
        raise UsageError("fit(): MPI was finalized by an earlier fit() in this process; "
                         "under mpiexec a process trains once (start one job per run)")


def _result(finished) -> TrainResult:
    from .train.checkpoint import list_checkpoints
    t, cfg = finished.trainer, finished.trainer.cfg
    newest = None
    if cfg.checkpoint_dir and os.path.isdir(cfg.checkpoint_dir):
        found = list_checkpoints(cfg.checkpoint_dir)
        newest = str(found[-1]) if found else None
    metrics = {k: v.item() if hasattr(v, "item") else v for k, v in finished.result.items()}
    return TrainResult(metrics=metrics, step=t.step, rank=t.rank,
                       ranks=t.size, model=t.model, config=cfg, metrics_out=cfg.metrics_out,
                       save_weights=cfg.save_weights, checkpoint_dir=cfg.checkpoint_dir,
                       checkpoint=newest,
                       resumed_from=str(t.resumed_from) if t.resumed_from else None,
                       stopped=finished.stopped)


def _signal_handlers() -> dict:
    return {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(previous: dict) -> None:
    """The script's own handlers again once the run is over (the command exits instead)."""
    for sig, handler in previous.items():
        try:
            if handler is not None:
                signal.signal(sig, handler)
        except ValueError:                # not the main thread: nothing was installed
            pass
