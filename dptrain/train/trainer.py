"""The training loop: data, model, optimiser and schedule wired from a TrainConfig.

Rank 0 alone prints, writes metrics and checkpoints; every rank runs the same loop over
the same global batches and takes its own slice of each. The position in training is
(epoch, step within the epoch), which is what a checkpoint stores and a resume restores.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import os
import sys
import time

import numpy as np

from .. import backend, comm as comms, data, nn, optim
from ..comm import order_check
from ..comm.watchdog import Watchdog, guarded
from ..data import augment
from ..data.prefetch import Prefetcher, make_transfer
from ..errors import TrainingFailure, UsageError, on_this_rank_only
from ..parallel import DataParallel
from ..parallel.trace import Tracer
from ..comm.link_probe import describe as describe_link
from .auto_report import auto_schedules, report_plan
from . import checkpoint, faults, outputs, startup
from .config import TrainConfig, parse_interval
from .evaluate import evaluate_shares
from .metrics import EpochLog, MetricsWriter, Progress
from .preemption import PreemptionGuard, StopRequested
from .sampler_feed import SamplerFeed
from .step_metrics import StepMetrics
from .setup import build_model, build_optimizer, save_weights, setup_backend


class Trainer:
    def __init__(self, cfg: TrainConfig, comm=None):
        self.cfg = cfg
        self.comm = comm if comm is not None else comms.default()
        if cfg.net_emulate and self.comm.size > 1:
            try:
                self.comm = comms.create("emulated", inner=self.comm, spec=cfg.net_emulate)
            except ValueError:
                pass                      # reported by validate() below, on every rank alike
        self.rank, self.size = self.comm.rank, self.comm.size
        self.is_root = self.rank == 0
        self.step = self.epoch = self.pos = 0       # global step; epoch; step within it
        self.skipped = 0
        self.resumed_from = None
        self._resumed_plan = None                   # the checkpoint's communication plan
        self._saved_step = None
        self.lock = None
        # Everything that can fail on bad input happens before the first collective, and the
        # ranks agree on the outcome: one rank's unreadable file stops every rank with exit 2
        # instead of leaving the others waiting in a broadcast.
        startup.agree(self.comm, self._setup_local, on_refusal=self._release_outputs)
        try:
            self._agree_on_transport()
        except UsageError:
            self._release_outputs()
            raise
        self.watchdog = Watchdog(cfg.comm_timeout, self.rank) if self.size > 1 else None
        self.dp = DataParallel(self.model, self.comm, schedule=cfg.sync, bucket_mb=cfg.bucket_mb,
                               progress=cfg.comm_progress, sync_bn=cfg.sync_bn,
                               grad_dtype=cfg.grad_dtype, watchdog=self.watchdog,
                               settle_each_step=cfg.skip_nonfinite > 0,
                               fc_replicate=cfg.fc_replicate, global_batch=cfg.batch_size,
                               plan=self._resumed_plan, auto_schedules=auto_schedules(cfg))
        self.dp.step = self.step
        self.dp.broadcast_parameters(root=0)
        self.inputs = Prefetcher(self._load_inputs, make_transfer())
        self.feed = SamplerFeed(self.sampler, self.comm, self._guard)
        self.step_metrics = StepMetrics(self.comm, self._guard, self._metrics_pipeline())
        self.tracer = None
        if cfg.trace:
            self.tracer = Tracer(self.rank, first_step=self.step + 1, steps=cfg.trace_steps)
            self.model.tracer = self.dp.tracer = self.tracer
        self.fault = faults.from_env()

    def _agree_on_transport(self) -> None:
        """Every rank describes its device and libraries; all choose from the same list, so
        the transport, the metrics pipeline and any refusal are the same on every rank."""
        mine = comms.choice.local_caps(backend.device_name, backend.device_identity())
        caps = [c for _, c in sorted(self.comm.allreduce_obj([(self.rank, mine)]))]
        # a device rank reads its results late; decided for all ranks alike (step_metrics.py)
        self.device_reads = any(c.device_reads for c in caps)
        try:
            self.transport, self.transport_why = comms.choose(self.cfg.comm, caps)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if self.size > 1 and self.transport != "mpi":      # gradients in device memory
            self.comm = comms.wrap(self.transport, order_check.unchecked(self.comm))
        mode = order_check.mode_from_env() if self.cfg.check_collectives is None \
            else order_check.parse_mode(self.cfg.check_collectives)
        self.comm = order_check.checked(self.comm, mode) if self.size > 1 else self.comm
        self.order_checks_every = mode if isinstance(mode, int) else 0

    def _metrics_pipeline(self) -> str:
        """Synchronous where --skip-nonfinite must decide before the next updates, or where
        there is nothing to defer (one process on the CPU); else one step late (host values)
        or two (device values, copied behind the step's kernels)."""
        if self.cfg.skip_nonfinite > 0 or (self.size == 1 and not self.device_reads):
            return "synchronous"
        return "device" if self.device_reads else "host"

    def _setup_local(self) -> None:
        """Configuration, data, model, optimiser, schedule, resume: no communication here."""
        cfg = self.cfg.validate()
        if cfg.threads is None and self.comm.local_size > 1:
            # one BLAS thread per core share: ranks on a node must not oversubscribe it
            cfg.threads = max(1, (os.cpu_count() or 1) // self.comm.local_size)
        outputs.check(cfg, self.is_root)
        try:
            self.augmentations = augment.parse(cfg.augment)
        except ValueError as exc:
            raise UsageError(f"--augment: {exc}") from None
        setup_backend(cfg, self.comm.local_rank, self.comm.local_size)
        try:
            self.ds = data.load(cfg.dataset, num_classes=cfg.num_classes)
        except data.DataError as exc:
            raise UsageError(str(exc)) from None
        if cfg.batch_size < self.size:
            raise UsageError(f"--batch-size {cfg.batch_size} is smaller than the {self.size} ranks")
        if cfg.batch_size > len(self.ds.x_train):
            raise UsageError(f"--batch-size {cfg.batch_size} exceeds the {len(self.ds.x_train)} "
                             f"training samples of {self.ds.name}")
        self.model = build_model(cfg, self.ds)
        self.opt = build_optimizer(cfg, self.model)
        self.loss = nn.SoftmaxCrossEntropy()
        try:
            self.sampler = data.samplers.create(
                cfg.sampler, len(self.ds.x_train), cfg.batch_size, self.ds.y_train, cfg.seed,
                min_prob=cfg.sampler_min_prob, pressure=cfg.obs_pressure,
                recompute_every=cfg.obs_recompute_every, beta=cfg.as_beta,
                delta_p=cfg.as_delta_p, delta_q=cfg.as_delta_q, weighting=cfg.as_weighting)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        self.steps_per_epoch = self.sampler.steps_per_epoch()
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps is not None:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        try:
            self.schedule = optim.Schedule(self.opt.lr, cfg.lr_schedule, self.total_steps,
                                           cfg.lr_step_size, cfg.lr_gamma,
                                           warmup_steps=cfg.warmup_steps)
        except ValueError as exc:
            raise UsageError(f"--lr-schedule: {exc}") from None
        if cfg.resume:
            self._resume()
        if self.is_root:          # last: nothing after it can refuse and leave the lock behind
            self.lock = outputs.lock_checkpoint_dir(cfg, warn=lambda m: print(m, file=sys.stderr))

    def _release_outputs(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # --- checkpoints -----------------------------------------------------
    def _resume(self) -> None:
        warn = (lambda m: print(m, file=sys.stderr)) if self.is_root else (lambda m: None)
        found = checkpoint.list_checkpoints(self.cfg.checkpoint_dir)
        ckpt = checkpoint.latest(self.cfg.checkpoint_dir, warn=warn)
        if ckpt is None:
            if found:
                raise UsageError(f"--resume: no usable checkpoint in {self.cfg.checkpoint_dir} "
                                 f"(all {len(found)} corrupt)")
            raise UsageError(f"--resume: no checkpoint in {self.cfg.checkpoint_dir}")
        try:
            checkpoint.check_compatible(ckpt, dataclasses.asdict(self.cfg))
            checkpoint.restore(ckpt, self.model, self.opt)
        except (checkpoint.CheckpointError, ValueError, KeyError) as exc:
            raise UsageError(str(exc)) from None
        meta = ckpt["meta"]
        self.step, self.epoch, self.pos = meta["step"], meta["epoch"], meta["pos"]
        self.sampler.load_state_dict(meta["sampler"])
        self.resumed_from = ckpt["path"]
        self._resumed_plan = meta.get("comm_plan")

    def settle(self) -> list:
        """Complete every pending update, reduction and check, so that what is saved next is
        known to be finite; returns the step results this completed (for the epoch's sums)."""
        self.dp.flush()
        problem = None if self.dp.watch.synchronous else self.dp.watch.check()
        results = self.step_metrics.drain()
        for r in results:
            self.check_step(r)
        if problem:
            raise TrainingFailure(problem)
        return results

    def save_checkpoint(self) -> list:
        """Settled first, so the parameters are those of the step just finished and a
        diverged step is never saved. Returns the step results settling completed."""
        if self._saved_step == self.step:
            return []
        self._saved_step = self.step
        results = self.settle()
        error = None
        if self.is_root:
            meta = {"epoch": self.epoch, "pos": self.pos, "model": self.cfg.model,
                    "config": dataclasses.asdict(self.cfg), "sampler": self.sampler.state_dict(),
                    "rng": {"seed": self.cfg.seed, "step": self.step},
                    "comm_plan": self.dp.auto.plan.as_dict() if self.dp.auto and self.dp.auto.plan else None}
            try:
                checkpoint.save(self.cfg.checkpoint_dir, self.step, self.model, self.opt, meta,
                                keep=self.cfg.keep_checkpoints)
            except OSError as exc:                 # a full disk, a quota, a vanished mount
                error = (f"cannot write the checkpoint of step {self.step} in "
                         f"{self.cfg.checkpoint_dir} ({exc.strerror or exc}); the previous "
                         "checkpoints are intact")
        # no rank runs ahead of a checkpoint: once any rank returns, it is on disk (or every
        # rank stops with the reason)
        with self._guard(f"agreement after the checkpoint of step {self.step}"):
            errors = self.comm.allreduce_obj([error] if error else [])
        if errors:
            raise TrainingFailure(errors[0])
        return results

    # --- one step --------------------------------------------------------
    def _micro_batches(self, ids) -> list:
        """Positions in the global batch of each global micro-batch (--accumulate)."""
        return [m for m in np.array_split(np.arange(len(ids)), self.cfg.accumulate) if len(m)]

    def _load_inputs(self, step: int, ids, weights) -> list:
        """This rank's host arrays of a step, micro-batch after micro-batch: x (augmented,
        in the model's dtype), labels, and the sample weights when the sampler gives them."""
        arrays = []
        for micro in self._micro_batches(ids):
            at = data.rank_slice(micro, self.rank, self.size)
            local = ids[at]
            x = augment.apply(self.ds.x_train[local], local, self.augmentations, self.cfg.seed, step)
            arrays += [np.asarray(x, dtype=self.model.dtype), np.asarray(self.ds.y_train[local])]
            if weights is not None:
                arrays.append(np.asarray(weights[at], dtype=self.model.dtype))
        return arrays


    def train_step(self, ids, global_batch: int, stop_flag: int = 0, weights=None):
        """One global step; returns the StepResults (global loss, correct, lr, stop) that are
        complete: this step's, or with deferred metrics the previous step's (step_metrics.py).

        With --accumulate N the global batch is cut into N global micro-batches, each
        split over the ranks; every one is normalised by the whole batch, so their sum
        is the same mean gradient. ``weights`` are per-sample loss weights (importance
        sampling). Adaptive samplers then observe the batch's per-sample losses and
        gradient bounds, gathered from every rank.
        """
        faults.maybe_inject(self.fault, self.rank, self.step, self.model)
        if self.tracer is not None:
            self.tracer.step = self.step
        t_step = time.perf_counter()
        lr = self.schedule(self.step)
        micro_batches = self._micro_batches(ids)
        arrays = iter(self.inputs.take(self.step, ids, weights))
        loss_sum, correct_sum = 0.0, 0          # 0-d device arrays on a GPU: not read here
        observed = []
        for j, micro in enumerate(micro_batches):
            at = data.rank_slice(micro, self.rank, self.size)        # positions in the batch
            local = ids[at]
            x, y = next(arrays), next(arrays)
            w = None if weights is None else next(arrays)
            ctx = nn.BatchContext(local, self.step, self.cfg.seed)
            loss, correct = self.dp.train_step(x, y, self.loss, self.opt, lr=lr,
                                               global_batch=global_batch, context=ctx,
                                               communicate=j == len(micro_batches) - 1, weights=w)
            loss_sum, correct_sum = loss_sum + loss, correct_sum + correct
            if self.sampler.adaptive:
                observed.append((micro, SamplerFeed.local_stats(self.loss, y, len(local))))
        if observed:
            self.feed.observe(self.step, ids, observed)
        if self.tracer is not None:
            self.tracer.span(f"step {self.step}", "step", t_step, time.perf_counter(), lane=2)
        if not self.dp.watch.synchronous:
            # Reduced gradients are equal on every rank, so every rank fails at the same step.
            # On a GPU only earlier steps' checks are read: they are done, this one is queued.
            problem = self.dp.watch.check(self.step if self.device_reads else None)
            if problem:
                raise TrainingFailure(problem)
        results = self.step_metrics.post(self.step, lr, global_batch, loss_sum, correct_sum, stop_flag)
        for r in results:
            self.check_step(r)
        return results

    def check_step(self, r) -> None:
        """A NaN/inf loss (or gradient) fails the run, or is skipped with --skip-nonfinite."""
        problem = (f"loss became {r.loss} at step {r.step}" if not math.isfinite(r.loss)
                   else self.dp.nonfinite)
        if not problem:
            return
        if self.skipped >= self.cfg.skip_nonfinite:
            raise TrainingFailure(problem)
        self.dp.discard()
        self.skipped += 1
        if self.is_root:
            print(f"dptrain: warning: {problem}: update skipped "
                  f"({self.skipped} of {self.cfg.skip_nonfinite})", file=sys.stderr)

    def _guard(self, what: str):
        return guarded(self.watchdog, what)

    def check_replicas(self) -> None:
        """Every rank must hold the same parameters; a hash of them is compared."""
        self.dp.flush()
        h = hashlib.blake2b(digest_size=8)
        for _, p in self.model.named_params():
            h.update(backend.to_numpy(p).tobytes())
        digest = np.frombuffer(h.digest(), dtype=np.uint64)
        with self._guard(f"allgather of parameter hashes at step {self.step}"):
            all_digests = self.comm.allgather(digest)[:, 0]
        if not np.all(all_digests == all_digests[0]):
            bad = [r for r, d in enumerate(all_digests) if d != all_digests[0]]
            raise TrainingFailure(f"replicas diverged at step {self.step}: ranks {bad} differ "
                                  "from rank 0 (--check-replicas)")

    def evaluate(self) -> dict:
        """Loss and accuracy over the test split, shared out over the ranks."""
        self.dp.flush()
        metrics, *_ = evaluate_shares(
            self.model, self.comm, self.ds.x_test, self.ds.y_test, self.cfg.eval_batch_size,
            lambda: self._guard(f"allreduce of the evaluation at step {self.step}"))
        return metrics

    def _evaluate_training_set(self, refresh: bool) -> dict:
        """Loss and accuracy over the whole training set (inference mode), so samplers are
        compared on the same quantity; adaptive samplers may take the per-sample losses."""
        metrics, losses, bounds, sizes = evaluate_shares(
            self.model, self.comm, self.ds.x_train, self.ds.y_train, self.cfg.eval_batch_size,
            lambda: self._guard(f"allreduce of the training-set evaluation at step {self.step}"))
        if refresh:
            self.feed.refresh(self.step, self.epoch, losses, bounds, sizes)
        return metrics

    # --- the loop --------------------------------------------------------
    def run(self) -> dict:
        # a diverging run is reported once, as exit 3 with its step, not as numpy warnings
        ok = disagreed = False
        try:
            with np.errstate(over="ignore", invalid="ignore"), PreemptionGuard() as guard:
                result = self._run(guard)
            ok = True
            return result
        except order_check.CollectiveOrderError:
            disagreed = True    # the ranks' states differ: nothing more may be posted
            raise
        except (TrainingFailure, StopRequested) as exc:
            if getattr(exc, "local", False):
                raise
            # failures every rank agreed on: complete the reduction still in flight, so MPI
            # finalises cleanly (the others end the job with MPI_Abort anyway)
            self.step_metrics.drain()
            raise
        except UsageError as exc:          # after the start-up only this rank can know it
            raise on_this_rank_only(exc)
        finally:
            self.dp.close(flush=ok, abandon=disagreed)
            if self.watchdog is not None:
                self.watchdog.close()
            self._release_outputs()

    def _run(self, guard) -> dict:
        cfg = self.cfg
        every, unit = parse_interval(cfg.checkpoint_every)
        metrics = MetricsWriter(cfg.metrics_out, enabled=self.is_root)
        progress = Progress(self.is_root and not cfg.quiet)
        say = print if self.is_root and not cfg.quiet else (lambda *a, **k: None)
        say(f"dptrain: {cfg.model} ({self.model.num_params():,} params) on {self.ds.name} "
            f"({len(self.ds.x_train)} train / {len(self.ds.x_test)} test), batch {cfg.batch_size}, "
            f"{cfg.optimizer}, {self.size} rank(s), {backend.device_name}"
            + (f" over {self.transport}" if self.size > 1 else "")
            + (f" ({self.transport_why})" if self.size > 1 and self.device_reads else "")
            + (f", link {describe_link(self.dp.auto.link)} (measured)" if self.dp.auto else "")
            + (f", resumed from {self.resumed_from.name} at step {self.step}"
               if self.resumed_from else ""), flush=True)
        result = {}
        if self.tracer is not None:
            with self._guard("barrier before tracing"):
                self.comm.barrier()
            self.tracer.start_clock()
        try:
            while self.step < self.total_steps:
                n_batches = min(self.steps_per_epoch - self.pos, self.total_steps - self.step)
                progress.start(n_batches, f"epoch {self.epoch + 1}/{cfg.epochs}")
                log = EpochLog(metrics, progress, cfg.log_every, self.epoch, self.schedule(self.step))

                def account(results):
                    """Fold completed step results into the epoch's numbers; stop if asked."""
                    for r in results:
                        log.add(r)
                        if r.stop:
                            if cfg.checkpoint_dir:
                                self.save_checkpoint()      # stopping: its results go unlogged
                            raise StopRequested(f"stopped by a signal after step {self.step}"
                                                + ("; checkpoint written" if cfg.checkpoint_dir
                                                   else " (no --checkpoint-dir: nothing saved)"))

                upcoming = self.sampler.batch(self.epoch, self.pos)
                for k in range(n_batches):
                    ids, weights = upcoming
                    results = self.train_step(ids, len(ids), guard.signum, weights)
                    if k + 1 < n_batches:       # the next batch loads while this step runs
                        upcoming = self.sampler.batch(self.epoch, self.pos + 1)
                        self.inputs.prefetch(self.step + 1, *upcoming)
                    self.step += 1
                    self.pos += 1
                    if self.pos == self.steps_per_epoch:
                        self.epoch, self.pos = self.epoch + 1, 0
                    account(results)
                    report_plan(self.dp.auto, say)
                    if cfg.check_replicas and self.step % cfg.check_replicas == 0:
                        self.check_replicas()
                    if self.order_checks_every and self.step % self.order_checks_every == 0:
                        self.comm.verify()
                    if cfg.checkpoint_dir and unit == "step" and every and self.step % every == 0:
                        account(self.save_checkpoint())
                account(self.settle())                    # the epoch's last steps
                progress.close()
                result = self._end_of_epoch(metrics, say, log)
                if (cfg.checkpoint_dir and unit == "epoch" and every and self.pos == 0
                        and self.epoch % every == 0):
                    self.save_checkpoint()
        finally:
            progress.close()
            metrics.close()
        if cfg.checkpoint_dir and self.step == self.total_steps:
            self.save_checkpoint()                       # the end of training
        if isinstance(self.comm, order_check.CheckedCommunicator):
            self.dp.flush()
            self.comm.verify()
        if cfg.save_weights and self.is_root:
            self.dp.flush()
            try:
                save_weights(self.model, cfg.save_weights)
            except OSError as exc:
                raise on_this_rank_only(TrainingFailure(
                    f"cannot write --save-weights {cfg.save_weights} ({exc.strerror or exc})"))
        if self.tracer is not None:
            self.dp.flush()
            with self._guard("gathering the trace"):
                self.tracer.write_merged(self.comm, cfg.trace)
        say(f"test accuracy: {result.get('test_accuracy', float('nan')):.4f}", flush=True)
        return result

    def _end_of_epoch(self, metrics, say, log) -> dict:
        """Evaluate, write the epoch's three metrics lines and print one line."""
        epoch = self.epoch if self.pos == 0 else self.epoch + 1     # the epoch just trained
        train_line = log.training_line(epoch, self.step)
        if self.dp.auto is not None:
            train_line["comm"] = self.dp.auto.summary()
        test = self.evaluate()
        train_split = self._evaluate_training_set(refresh=self.pos == 0)
        metrics.write(train_line)
        metrics.write({"epoch": epoch, "step": self.step, "split": "test", **test})
        metrics.write({"epoch": epoch, "step": self.step, "split": "train", **train_split})
        say(f"epoch {epoch:>3}  step {self.step:>6}  loss {train_line['loss']:.4f}  "
            f"acc {train_line['accuracy']:.4f}  test_loss {test['loss']:.4f}  "
            f"test_acc {test['accuracy']:.4f}  lr {train_line['lr']:.3g}  "
            f"{train_line['samples_per_s']:.0f} img/s  {train_line['time_s']:.1f} s", flush=True)
        return {"epochs": epoch, "steps": self.step, "test_loss": test["loss"],
                "test_accuracy": test["accuracy"], "train_loss": train_line["loss"]}
