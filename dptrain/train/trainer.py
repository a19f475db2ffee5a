"""The training loop: data, model, optimiser and schedule wired from a TrainConfig.

Rank 0 alone prints, writes metrics and checkpoints; every rank runs the same loop over
the same global batches and takes its own slice of each. The position in training is
(epoch, step within the epoch), which is what a checkpoint stores and a resume restores.
"""
from __future__ import annotations

import numpy as np

from .. import comm as comms
from ..comm.watchdog import Watchdog, guarded, timed_step
from ..data.prefetch import Prefetcher, make_transfer
from ..errors import UsageError
from ..parallel import DataParallel
from ..parallel.trace import Tracer
from . import (checkpointing, early_stop, faults, fingerprint, global_step, graph_step,
               run_banner, run_end, saving, startup, transport)
from .auto_report import auto_schedules, report_plan
from .config import TrainConfig, parse_interval
from .epoch_report import EpochReport
from .evaluate import per_sample_stats
from .local_setup import prepare
from .metrics import EpochLog, MetricsWriter, Progress, new_run_id
from .nonfinite_steps import NonfiniteSteps
from .preemption import PreemptionGuard, StopRequested, stop_at_once
from .replicas import check_replicas
from .run_outcome import RunOutcome
from .sampler_feed import SamplerFeed
from .step_inputs import StepInputs
from .step_metrics import StepMetrics


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
        self._saved_step = None
        self.lock = None
        # Everything that can fail on bad input happens before the first collective, which
        # agrees on the outcome and compares what each rank was given (fingerprint.py): one
        # rank's unreadable file or other --seed stops every rank with exit 2 before anything
        # a difference could break (the order check, the link probe, the broadcast).
        startup.agree(self.comm, lambda: self._adopt(prepare(cfg, self.comm)),
                      on_refusal=self._release_outputs, fingerprint=fingerprint.of_rank)
        try:
            agreed = transport.agree(self.comm, self.cfg)
        except UsageError:
            self._release_outputs()
            raise
        self.comm, self.transport, self.transport_why = agreed.comm, agreed.transport, agreed.why
        self.device_reads, self.order_checks_every = agreed.device_reads, agreed.checks_every
        self.layout = agreed.layout
        self.watchdog = Watchdog.for_run(cfg.comm_timeout, self.rank, self.size)
        self.dp = DataParallel(self.model, self.comm, schedule=cfg.sync, bucket_mb=cfg.bucket_mb,
                               progress=cfg.comm_progress, sync_bn=cfg.sync_bn,
                               grad_dtype=cfg.grad_dtype, watchdog=self.watchdog,
                               settle_each_step=cfg.skip_nonfinite > 0,
                               fc_replicate=cfg.fc_replicate, global_batch=cfg.batch_size,
                               plan=self._resumed_plan, auto_schedules=auto_schedules(cfg))
        self.dp.step = self.step
        self.dp.broadcast_parameters(root=0)
        self.step_inputs = StepInputs(self.ds, self.augmentations, cfg.seed, cfg.accumulate,
                                      self.rank, self.size, self.model.dtype)
        self.inputs = Prefetcher(self.step_inputs.load, make_transfer())
        self.feed = SamplerFeed(self.sampler, self.comm, self._guard, evaluate=self._sample_stats)
        self.nonfinite = NonfiniteSteps(self.cfg.skip_nonfinite, self.dp, self.is_root)
        self.report = EpochReport(self.cfg, self.model, self.dp, self.comm, self.ds, self.sampler,
                                  self.feed, self._guard)
        self.step_metrics = StepMetrics(self.comm, self._guard,
                                        agreed.metrics_pipeline(cfg.skip_nonfinite, self.size))
        self.tracer = None
        if cfg.trace:
            self.tracer = Tracer(self.rank, first_step=self.step + 1, steps=cfg.trace_steps)
            self.model.tracer = self.dp.tracer = self.tracer
        self.fault = faults.from_env()
        # --cuda-graph on: full-batch steps replayed from a CUDA graph (graph_step.py)
        self.graph = graph_step.for_trainer(self) if cfg.cuda_graph == "on" else None

    def _adopt(self, setup):
        self.cfg = setup.cfg
        self.augmentations, self.ds = setup.augmentations, setup.ds
        self.model, self.opt, self.loss = setup.model, setup.opt, setup.loss
        self.sampler, self.schedule = setup.sampler, setup.schedule
        self.steps_per_epoch, self.length = setup.steps_per_epoch, setup.length
        self.total_steps = setup.length.total_steps
        p = setup.position
        self.step, self.epoch, self.pos, self.resumed_from = p.step, p.epoch, p.pos, p.resumed_from
        self._resumed_plan = p.comm_plan                # the checkpoint's communication plan
        # its epoch's metrics so far (None: not carried; False: not resumed mid-epoch)
        self._resumed_sums = p.epoch_sums if p.resumed_from and p.pos else False
        self.epoch_log = None
        self.lock = setup.lock
        return setup

    def _release_outputs(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # --- checkpoints -----------------------------------------------------
    def settle(self) -> list:
        """Complete every pending update, reduction and check (saving.settle); returns the
        step results this completed (for the epoch's sums)."""
        return saving.settle(self.dp, self.step_metrics, self.check_step, self.model,
                             self.comm, self.step, self._guard, self.cfg.sync_bn)

    def save_checkpoint(self) -> list:
        """Settled first, so the parameters are those of the step just finished and a
        diverged step is never saved. Returns the step results settling completed."""
        if self._saved_step == self.step:
            return []
        self._saved_step = self.step
        results = self.settle()
        sums = None
        if self.is_root and self.epoch_log is not None:
            sums = self.epoch_log.sums(results)
        plan = self.dp.auto.plan.as_dict() if self.dp.auto and self.dp.auto.plan else None
        saving.save(self.cfg, self.comm, self._guard, checkpointing.Position(
            self.step, self.epoch, self.pos, epoch_sums=sums), self.model, self.opt,
            self.sampler, plan)
        return results

    # --- one step --------------------------------------------------------
    def train_step(self, ids, global_batch: int, stop_flag: int = 0, weights=None):
        """One global step (global_step.py); returns the StepResults that are complete."""
        return global_step.run(self, ids, global_batch, stop_flag, weights)

    def _sample_stats(self, ids):
        """Losses and gradient bounds of training samples ``ids`` (this rank's share of a
        sampler's probe) in inference mode, after every pending update."""
        self.dp.flush()
        losses, bounds, _ = per_sample_stats(self.model, self.ds.x_train, self.ds.y_train,
                                             self.cfg.eval_batch_size, rows=ids)
        return losses, bounds

    def check_step(self, r) -> None:
        """A NaN/inf loss (or gradient) fails the run, or is skipped with --skip-nonfinite."""
        self.nonfinite.check(r)

    @property
    def skipped(self) -> int:
        return self.nonfinite.skipped

    def _guard(self, what: str, phase: str):
        return guarded(self.watchdog, what, phase)

    def check_replicas(self) -> None:
        self.dp.flush()
        check_replicas(self.model, self.comm, self.step, self._guard)

    def evaluate(self) -> dict:
        """Loss and accuracy over the test split, shared out over the ranks."""
        return self.report.evaluate_test(self.step)

    # --- the loop --------------------------------------------------------
    def run(self, after_completion=None) -> dict:
        """``after_completion``: the signal handler once the run ended normally (preemption.py)."""
        # a diverging run is reported once, as exit 3 with its step, not as numpy warnings
        with RunOutcome(self.rank, lambda: self.step, self.step_metrics.drain, self._close), \
                np.errstate(over="ignore", invalid="ignore"), \
                PreemptionGuard(self._stop_at_once, after_completion) as guard:
            return self._run(guard)

    def _close(self, ok: bool, abandon: bool) -> None:
        self.dp.close(flush=ok, abandon=abandon)
        if self.watchdog is not None:
            self.watchdog.close()
        self._release_outputs()

    def _stop_at_once(self, signum: int) -> None:
        stop_at_once(self.size, self.is_root, signum)

    def _run(self, guard) -> dict:
        cfg = self.cfg
        every, unit = parse_interval(cfg.checkpoint_every)
        metrics = MetricsWriter(cfg.metrics_out, run_id=new_run_id(), enabled=self.is_root)
        progress = Progress(self.is_root and not cfg.quiet)
        say = print if self.is_root and not cfg.quiet else (lambda *a, **k: None)
        say(run_banner.start_line(
            cfg, self.model, self.ds, self.size, self.transport, self.transport_why,
            self.device_reads, self.dp.auto.link if self.dp.auto else None, self.length,
            self.steps_per_epoch, self.resumed_from, self.step,
            run_banner.topology(self.layout, self.comm)), flush=True)
        metrics.write("run", run_banner.run_record(cfg, self.size, self.steps_per_epoch,
                                                   self.total_steps, self.length, self.step,
                                                   self.resumed_from))
        report = self.report
        result, reached = {}, False                 # reached: --stop-at-accuracy ended the run
        if self.tracer is not None:
            with self._guard("barrier before tracing", "setup"):
                self.comm.barrier()
            self.tracer.start_clock()
        try:
            while self.step < self.total_steps and not reached:
                n_batches = min(self.steps_per_epoch - self.pos, self.total_steps - self.step)
                progress.start(n_batches, f"epoch {self.epoch + 1}/{self.length.epochs}")
                log = self.epoch_log = EpochLog(metrics, progress, cfg.log_every, self.epoch + 1,
                                                self.schedule(self.step), say)
                if self.pos and self._resumed_sums is not False:   # the epoch a resume cut
                    log.resume(self._resumed_sums, self.step)
                self._resumed_sums = False

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
                    with timed_step(self.watchdog, self.step):    # the step limit's measure
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
                    if k + 1 < n_batches and report.steps_due(self.step):   # within the epoch
                        reached = early_stop.reached(
                            cfg, report.within_epoch(metrics, log, self.step, self.epoch + 1), say)
                        if reached:
                            break
                account(self.settle())                    # the epoch's last steps
                progress.close()
                result = report.finish_epoch(metrics, say, log,
                                             self.step == self.total_steps or reached,
                                             self.step, self.epoch, self.pos)
                if (cfg.checkpoint_dir and unit == "epoch" and every and self.pos == 0
                        and self.epoch % every == 0):
                    self.save_checkpoint()
                reached = reached or early_stop.reached(cfg, result, say)
        finally:
            progress.close()
            metrics.close()
        run_end.finish(cfg, self.comm, self.dp, self.model, self.tracer, self.is_root, self._guard,
                       self.save_checkpoint, self.step == self.total_steps or reached)
        say(f"test accuracy: {result.get('test_accuracy', float('nan')):.4f}", flush=True)
        return result
