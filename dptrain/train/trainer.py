"""The training loop: data, model, optimiser and schedule wired from a TrainConfig.

Rank 0 alone prints, writes metrics and saves weights; every rank runs the
same loop over the same global batches and takes its own slice of each.
"""
from __future__ import annotations

import math
import os
import time

import numpy as np

from .. import backend, comm as comms, data, models, nn, optim
from ..backend import DeviceError
from ..data import augment
from ..errors import TrainingFailure, UsageError
from .config import TrainConfig
from .evaluate import evaluate_sums
from .metrics import MetricsWriter, Progress
from ..parallel import DataParallel


def check_writable(path: str | None, what: str) -> None:
    """Refuse up front an output file whose directory is missing or read-only."""
    if not path:
        return
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"{what} {path}: directory {directory} does not exist")
    if not os.access(directory, os.W_OK):
        raise UsageError(f"{what} {path}: directory {directory} is not writable")


def save_weights(model, path: str) -> None:
    """'<layer-index>.<param>' arrays (buffers too) in an .npz, written atomically."""
    tmp = f"{path}.tmp.{os.getpid()}.npz"
    np.savez(tmp, **model.state_dict())
    os.replace(tmp, path)


def load_weights(model, path: str) -> None:
    try:
        state = data.readers.load_npz(path)
    except data.DataError as exc:
        raise UsageError(f"weights {exc}") from None
    try:
        model.load_state_dict(state)
    except ValueError as exc:
        raise UsageError(f"{path}: {exc}") from None


def build_model(cfg: TrainConfig, ds: data.Dataset):
    try:
        return models.get(cfg.model, ds.input_shape, ds.num_classes, seed=cfg.seed)
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
        backend.use_device(cfg.device, local_rank, local_size)
    except DeviceError as exc:
        raise UsageError(str(exc)) from None


class Trainer:
    def __init__(self, cfg: TrainConfig, comm=None):
        self.cfg = cfg
        self.comm = comm if comm is not None else comms.default()
        self.rank, self.size = self.comm.rank, self.comm.size
        self.is_root = self.rank == 0
        # Everything that can fail on bad input happens before the first collective, and the
        # ranks agree on the outcome: one rank's unreadable file stops every rank with exit 2
        # instead of leaving the others waiting in a broadcast.
        error = None
        try:
            self._setup_local()
        except UsageError as exc:
            error = str(exc)
        errors = self.comm.allreduce_obj([(self.rank, error)] if error else [])
        if errors:
            rank, message = min(errors)
            raise UsageError(message if rank == 0 else f"rank {rank}: {message}")
        self.dp = DataParallel(self.model, self.comm, schedule=cfg.sync, bucket_mb=cfg.bucket_mb,
                               progress=cfg.comm_progress, sync_bn=cfg.sync_bn,
                               grad_dtype=cfg.grad_dtype)
        self.dp.broadcast_parameters(root=0)
        self.step = 0

    def _setup_local(self) -> None:
        """Configuration, data, model, optimiser and schedule: no communication here."""
        cfg = self.cfg.validate()
        if cfg.threads is None and self.comm.local_size > 1:
            # one BLAS thread per core share: ranks on a node must not oversubscribe it
            cfg.threads = max(1, (os.cpu_count() or 1) // self.comm.local_size)
        check_writable(cfg.metrics_out, "--metrics-out")
        check_writable(cfg.save_weights, "--save-weights")
        try:
            self.augmentations = augment.parse(cfg.augment)
        except ValueError as exc:
            raise UsageError(f"--augment: {exc}") from None
        setup_backend(cfg, self.comm.local_rank, self.comm.local_size)
        try:
            self.ds = data.load(cfg.dataset)
        except data.DataError as exc:
            raise UsageError(str(exc)) from None
        if cfg.batch_size < self.size:
            raise UsageError(f"--batch-size {cfg.batch_size} is smaller than the {self.size} ranks")
        self.model = build_model(cfg, self.ds)
        self.opt = build_optimizer(cfg, self.model)
        self.loss = nn.SoftmaxCrossEntropy()
        self.sampler = data.UniformSampler(len(self.ds.x_train), cfg.batch_size, cfg.seed)
        per_epoch = self.sampler.steps_per_epoch()
        self.total_steps = per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        try:
            self.schedule = optim.Schedule(self.opt.lr, cfg.lr_schedule, self.total_steps,
                                           cfg.lr_step_size, cfg.lr_gamma,
                                           warmup_steps=cfg.warmup_steps)
        except ValueError as exc:
            raise UsageError(f"--lr-schedule: {exc}") from None

    # --- one batch -------------------------------------------------------
    def _batch(self, ids):
        xp = backend.xp
        x = augment.apply(self.ds.x_train[ids], ids, self.augmentations, self.cfg.seed, self.step)
        return xp.asarray(x, dtype=self.model.dtype), xp.asarray(self.ds.y_train[ids])

    def train_step(self, ids, global_batch: int):
        """One global step; returns (global mean loss, global number correct, lr).

        With --accumulate N the global batch is cut into N global micro-batches, each
        split over the ranks; every one is normalised by the whole batch, so their sum
        is the same mean gradient.
        """
        lr = self.schedule(self.step)
        micro_batches = [m for m in np.array_split(ids, self.cfg.accumulate) if len(m)]
        totals = np.zeros(2, dtype=np.float64)
        for j, micro in enumerate(micro_batches):
            local = data.rank_slice(micro, self.rank, self.size)
            x, y = self._batch(local)
            ctx = nn.BatchContext(local, self.step, self.cfg.seed)
            totals += self.dp.train_step(x, y, self.loss, self.opt, lr=lr,
                                         global_batch=global_batch, context=ctx,
                                         communicate=j == len(micro_batches) - 1)
        self.comm.allreduce(totals)          # every rank sees the same numbers, NaN included
        if not math.isfinite(totals[0]):
            raise TrainingFailure(f"loss became {totals[0]} at step {self.step}")
        return float(totals[0]), int(totals[1]), lr

    def evaluate(self) -> dict:
        """Each rank evaluates its share of the test split; the sums are reduced."""
        self.dp.flush()
        n = len(self.ds.x_test)
        part = data.rank_slice(np.arange(n), self.rank, self.size)
        sums = np.array(evaluate_sums(self.model, self.ds.x_test[part], self.ds.y_test[part],
                                      self.cfg.eval_batch_size), dtype=np.float64)
        self.comm.allreduce(sums)
        return {"loss": sums[0] / max(sums[2], 1), "accuracy": sums[1] / max(sums[2], 1),
                "samples": int(sums[2])}

    # --- the loop --------------------------------------------------------
    def run(self) -> dict:
        # a diverging run is reported once, as exit 3 with its step, not as numpy warnings
        with np.errstate(over="ignore", invalid="ignore"):
            return self._run()

    def _run(self) -> dict:
        cfg = self.cfg
        metrics = MetricsWriter(cfg.metrics_out, enabled=self.is_root)
        progress = Progress(self.is_root and not cfg.quiet)
        say = print if self.is_root and not cfg.quiet else (lambda *a, **k: None)
        say(f"dptrain: {cfg.model} ({self.model.num_params():,} params) on {self.ds.name} "
            f"({len(self.ds.x_train)} train / {len(self.ds.x_test)} test), batch {cfg.batch_size}, "
            f"{cfg.optimizer}, {self.size} rank(s), {backend.device_name}", flush=True)
        epoch, result = 0, {}
        try:
            while self.step < self.total_steps:
                batches = self.sampler.epoch(epoch)
                remaining = self.total_steps - self.step
                batches = batches[:remaining]
                progress.start(len(batches), f"epoch {epoch + 1}/{cfg.epochs}")
                t0, seen, loss_sum, correct_sum = time.perf_counter(), 0, 0.0, 0
                for ids in batches:
                    loss, correct, lr = self.train_step(ids, len(ids))
                    self.step += 1
                    seen += len(ids)
                    loss_sum += loss * len(ids)
                    correct_sum += correct
                    progress.update(loss)
                    if cfg.log_every and self.step % cfg.log_every == 0:
                        metrics.write({"epoch": epoch, "step": self.step, "loss": loss,
                                       "accuracy": correct / len(ids), "lr": lr,
                                       "time_s": time.perf_counter() - t0})
                progress.close()
                elapsed = time.perf_counter() - t0
                train_line = {"epoch": epoch + 1, "step": self.step, "loss": loss_sum / seen,
                              "accuracy": correct_sum / seen, "lr": lr,
                              "samples_per_s": seen / elapsed, "time_s": elapsed}
                test = self.evaluate()
                test_line = {"epoch": epoch + 1, "step": self.step, "split": "test", **test}
                metrics.write(train_line)
                metrics.write(test_line)
                say(f"epoch {epoch + 1:>3}  step {self.step:>6}  loss {train_line['loss']:.4f}  "
                    f"acc {train_line['accuracy']:.4f}  test_loss {test['loss']:.4f}  "
                    f"test_acc {test['accuracy']:.4f}  lr {lr:.3g}  "
                    f"{train_line['samples_per_s']:.0f} img/s  {elapsed:.1f} s", flush=True)
                result = {"epochs": epoch + 1, "steps": self.step, "test_loss": test["loss"],
                          "test_accuracy": test["accuracy"], "train_loss": train_line["loss"]}
                epoch += 1
        finally:
            progress.close()
            metrics.close()
            self.dp.close()
        if cfg.save_weights and self.is_root:
            save_weights(self.model, cfg.save_weights)
        say(f"test accuracy: {result.get('test_accuracy', float('nan')):.4f}", flush=True)
        return result


def main_train(cfg: TrainConfig) -> dict:
    return Trainer(cfg).run()


