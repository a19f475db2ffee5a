"""Everything a rank prepares alone before the first collective: configuration, data,
model, optimiser, sampler, schedule and the resumed position.

Every failure here is a UsageError naming the culprit, so that the trainer can agree on
the outcome across ranks before any of them waits in a collective.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

from .. import data, nn, optim
from ..comm import order_check
from ..data import augment
from ..errors import UsageError
from . import outputs, run_length
from .checkpointing import Position, resume_position
from .config import TrainConfig
from .setup import build_model, build_optimizer, setup_backend
from .threads import default_threads


@dataclass
class LocalSetup:
    cfg: TrainConfig
    augmentations: list
    ds: object
    model: object
    opt: object
    loss: object
    sampler: object
    steps_per_epoch: int
    length: run_length.RunLength
    schedule: object
    position: Position
    lock: object                # rank 0's locks on its outputs (train/lock.py), or None


def prepare(cfg: TrainConfig, comm) -> LocalSetup:
    cfg = cfg.validate()
    if cfg.threads is None:
        cfg.threads = default_threads()
    try:        # resolved here, so that the ranks compare it before it wraps anything
        cfg.check_collectives = order_check.resolved(cfg.check_collectives)
    except ValueError as exc:
        raise UsageError(f"${order_check.ENV} {exc}") from None
    is_root = comm.rank == 0
    outputs.check(cfg, is_root)
    try:
        augmentations = augment.parse(cfg.augment)
    except ValueError as exc:
        raise UsageError(f"--augment: {exc}") from None
    setup_backend(cfg, comm.local_rank, comm.local_size)
    try:
        ds = data.load(cfg.dataset, num_classes=cfg.num_classes)
    except data.DataError as exc:
        raise UsageError(str(exc)) from None
    if cfg.batch_size < comm.size:
        raise UsageError(f"--batch-size {cfg.batch_size} is smaller than the {comm.size} ranks")
    if cfg.batch_size > len(ds.x_train):
        raise UsageError(f"--batch-size {cfg.batch_size} exceeds the {len(ds.x_train)} "
                         f"training samples of {ds.name}")
    model = build_model(cfg, ds)
    if cfg.sync_bn is None:
        # BatchNorm over each rank's slice would make the result depend on the rank count
        cfg.sync_bn = any(isinstance(layer, nn.BatchNorm) for layer in model.layers)
    opt = build_optimizer(cfg, model)
    try:
        sampler = data.samplers.create(
            cfg.sampler, len(ds.x_train), cfg.batch_size, ds.y_train, cfg.seed,
            min_prob=cfg.sampler_min_prob, pressure=cfg.obs_pressure,
            recompute_every=cfg.obs_recompute_every, beta=cfg.as_beta,
            delta_p=cfg.as_delta_p, delta_q=cfg.as_delta_q, weighting=cfg.as_weighting,
            bound=cfg.as_bound, refresh=cfg.as_refresh, refresh_per_bin=cfg.as_refresh_per_bin,
            counter=cfg.as_counter)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    steps_per_epoch = sampler.steps_per_epoch()
    length = run_length.resolve(cfg.epochs, cfg.max_steps, steps_per_epoch)
    try:
        schedule = optim.Schedule(opt.lr, cfg.lr_schedule, length.total_steps,
                                  cfg.lr_step_size, cfg.lr_gamma, warmup_steps=cfg.warmup_steps)
    except ValueError as exc:
        raise UsageError(f"--lr-schedule: {exc}") from None
    position = (resume_position(cfg, model, opt, sampler, is_root, length.total_steps)
                if cfg.resume else Position())
    # last: nothing after it can refuse and leave the lock behind
    lock = outputs.lock_outputs(cfg, warn=lambda m: print(m, file=sys.stderr)) \
        if is_root else None
    return LocalSetup(cfg, augmentations, ds, model, opt, nn.SoftmaxCrossEntropy(),
                      sampler, steps_per_epoch, length, schedule, position, lock)
