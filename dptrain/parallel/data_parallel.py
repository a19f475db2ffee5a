"""DataParallel: synchronous data-parallel SGD with gradient buckets (seed 000, Algorithms 2-3).

Losses are normalised by the *global* batch size, so summing local gradients over ranks
gives the exact global-batch mean gradient, even when slices differ in size. (That is also
the pre-division that keeps a float16 reduction from overflowing: every rank sends its
share of the mean, never a sum of P means.)

The schedule (blocking, overlap, overlap-fc: parallel/schedules/, one class each, registered
by name) decides when buckets are posted and completed and when updates are applied;
DataParallel holds what every schedule shares (buckets, the progress engine, statistics,
the non-finite watch) and calls the schedule's hooks at fixed points of a step.
``flush()`` completes everything pending (end of training, evaluation, checkpoints).

``schedule="auto"`` / ``bucket_mb="auto"`` (the trainer's defaults): parallel/autotune.py
measures the link and the layers, plans on rank 0 and calls ``reconfigure`` on every rank at
the same step; bucket boundaries never change the result.

Gradient accumulation: ``train_step(..., communicate=False)`` adds the micro-batch's
gradients to a local accumulator; the next ``communicate=True`` step folds it in before
its buckets are reduced, so only the last micro-batch communicates.
"""
from __future__ import annotations

import time

import numpy as np

from ..comm import build_buckets
from ..comm.hierarchical import choice_of
from ..comm.watchdog import guarded
from ..nn import BatchNorm
from . import engine
from . import progress as _engines, priority as _prioritised  # noqa: F401  (thread, poll; priority)
from . import schedules, trace
from .fc_replication import FCReplication, choose_layers
from .nonfinite import NonfiniteWatch
from .overlap_stats import OverlapStats
from .protocol import ReadyLedger

SCHEDULES = schedules.Names()                   # blocking, overlap, overlap-fc, then any registered
PROGRESS_MODES = engine.LiveNames("auto")       # auto, then the registered engines
GRAD_DTYPES = (None, "float32", "float16")


class DataParallel:
    def __init__(self, model, comm, schedule: str = "overlap", bucket_mb: float | str = 4.0,
                 progress: str = "auto", sync_bn: bool = False, grad_dtype: str | None = None,
                 watchdog=None, settle_each_step: bool = False, fc_replicate: str = "auto",
                 global_batch: int | None = None, plan: dict | None = None,
                 auto_schedules=None, link=None):
        """``schedule`` and ``bucket_mb`` may be "auto" (parallel/autotune.py): on several
        ranks the link is measured here (or ``link``, an AlphaBeta, is taken as given), and a
        plan is made after a few steps, or taken from ``plan`` (a checkpoint's)."""
        if schedule != "auto":
            schedules.get(schedule)                 # an unknown name: ValueError naming the choices
        if progress not in PROGRESS_MODES:
            raise ValueError(f"unknown progress mode {progress!r} (choose {', '.join(PROGRESS_MODES)})")
        if grad_dtype not in GRAD_DTYPES:
            raise ValueError(f"unknown gradient dtype {grad_dtype!r} (choose float32 or float16)")
        self.model, self.comm = model, comm
        self._requested_progress, self._fc_replicate = progress, fc_replicate
        self.global_batch, self.grad_dtype = global_batch, grad_dtype
        auto_buckets, auto_sync = bucket_mb == "auto", schedule == "auto"
        if auto_sync:           # warm up under overlap; one rank has nothing to overlap
            schedule = "overlap" if comm.size > 1 else "blocking"
        self.stats = OverlapStats()
        self._ready = ReadyLedger()                 # layers reported final in this backward
        self.step = 0                               # communicated steps, for messages
        self.watchdog = watchdog
        self.tracer = None                          # parallel.trace.Tracer, when tracing
        # With settle_each_step, overlap waits for every reduction at the end of the step, so
        # that a non-finite gradient is known before any of the step's updates (needed to
        # skip a step; costs the overlap with the next forward pass).
        self.settle_each_step = settle_each_step
        # Reduced gradients are checked for NaN/inf where they live; the verdict is read at
        # once with settle_each_step, else one step later (no host round trip per bucket).
        self.watch = NonfiniteWatch(synchronous=settle_each_step)
        self.accumulated = None                     # per-bucket accumulated micro-batch grads
        self.optimizer = None
        self._sync_bn = sync_bn
        self._mid_step = False                      # between micro-batches of one step
        self._buffers_before = None                 # settle_each_step: to undo a dropped step
        self._engine = self.fc = self.strategy = None
        self.buckets = []
        # auto buckets: one per layer until planned (on one rank: today's 4 MB cap)
        self._bucket_mb = (1e-9 if comm.size > 1 else 4.0) if auto_buckets else float(bucket_mb)
        self.reconfigure(schedule, None)
        self.auto = None
        if comm.size > 1 and (auto_buckets or auto_sync):
            from .autotune import AutoTuner
            self.auto = AutoTuner.start(self, link, (auto_schedules or SCHEDULES) if auto_sync
                                        else (schedule,), None if auto_buckets else float(bucket_mb), plan)
        elif getattr(choice_of(comm), "mode", None) == "auto":
            from .autotune import measure_links      # a fixed plan: each bucket's reduction
            measure_links(self, link)
        if sync_bn:
            for layer in model.layers:
                if isinstance(layer, BatchNorm):
                    layer.sync = self._sum_over_ranks

    # --- the shape of communication: schedule and buckets ----------------------------
    def reconfigure(self, schedule: str, groups, progress: str | None = None,
                    chunk_bytes: int | None = None) -> None:
        """Set the schedule, the buckets (``groups``: layer indices per bucket; None: the byte
        cap) and the engine a plan chose (None: --comm-progress's; ``chunk_bytes``: priority's).
        Between steps only: pending work is completed first."""
        self.flush()
        if self._engine is not None:
            self._engine.close()
        if self.fc is not None:
            for i in self.fc.layers:
                self.model.layers[i].compute_param_grads = True
        progress = progress or self._requested_progress
        if progress == "auto":
            # measured (docs/performance.md, 2026-11-27 on a quiet machine): polling was as
            # fast or faster than a communication thread for every schedule and model tried
            # (overlap-fc too: mlp-wide 204 vs 253 ms at 1 Gbit/s); NCCL progresses by itself
            progress = "poll"
        self.schedule, self.progress = schedule, progress
        comm, kind = self.comm, schedules.get(schedule)
        fc_layers = []
        if kind.replicates_fc and comm.size > 1:
            if self.global_batch is None:
                raise ValueError(f"{schedule} needs the global batch size (to size its gathers)")
            fc_layers = choose_layers(self.model, self._fc_replicate, self.global_batch)
        self.buckets = build_buckets(self.model, self._bucket_mb, exclude=set(fc_layers), groups=groups)
        self.bucket_of = {i: b for b in self.buckets for i in b.layers}
        for b in self.buckets:          # what goes on the wire: the buffer, or a float16 copy
            b.wire = b.buffer if self.grad_dtype != "float16" else b.buffer.astype(np.float16)
        runs = kind.resolve(comm.size, fc_layers)   # what runs here (one rank: blocking)
        options = {"chunk_bytes": chunk_bytes} if chunk_bytes and engine.chunked(progress) else {}
        self._engine = engine.create(progress, comm, **options) if runs.overlaps else None
        self.fc = FCReplication(self.model, comm, self._engine, fc_layers, self.global_batch or 0,
                                self.stats, self.watchdog) if fc_layers else None
        self.strategy = runs(self)

    @property
    def engine(self):
        """The progress engine of an overlapping schedule (None otherwise)."""
        return self._engine

    def fc_candidates(self) -> list[int]:
        """The layers overlap-fc would replicate (--fc-replicate's rule)."""
        if self.comm.size == 1 or self.global_batch is None:
            return []
        return choose_layers(self.model, self._fc_replicate, self.global_batch)

    @property
    def nonfinite(self) -> str | None:
        """Why the gradients of a step are unusable (with its step), once known."""
        return self.watch.found

    def guard(self, what: str, phase: str):
        """A collective bounded by the watchdog's limit for ``phase``, named ``what``."""
        return guarded(self.watchdog, what, phase)

    def _sum_over_ranks(self, a):
        out = a.copy()                      # host or device array, whichever the layer uses
        with self.guard(f"batch-norm allreduce at step {self.step}", "step"):
            self.comm.allreduce(out)
        return out

    def broadcast_parameters(self, root: int = 0) -> None:
        """Every replica starts from rank ``root``'s parameters and buffers."""
        with self.guard("broadcast of the initial parameters", "setup"):
            for _, arr in list(self.model.named_params()) + list(self.model.named_buffers()):
                self.comm.bcast(arr, root=root)

    # --- one step ------------------------------------------------------------
    def train_step(self, x, y, loss, opt, lr: float | None = None, global_batch: int | None = None,
                   context=None, communicate: bool = True, weights=None):
        """Returns (this rank's share of the global mean loss, number correct locally), as
        0-d arrays where the model lives: reading them on the host is the caller's choice
        (the trainer reads them a step later, so a GPU step never waits for the host).

        ``weights`` (one per local sample) scale each sample's loss, e.g. importance weights.
        """
        lr = opt.lr if lr is None else lr
        self.optimizer = opt
        if self.settle_each_step and not self._mid_step:
            # a step --skip-nonfinite may drop must not leave its running statistics behind
            self._buffers_before = [b.copy() for _, b in self.model.named_buffers()]
        if self.auto is not None and not self._mid_step:
            if self.auto.plan is None:              # timed rehearsals of this step, undone
                self.auto.rehearse(lambda: self._one_step(x, y, loss, opt, lr, global_batch,
                                                          context, True, weights))
            self.auto.before_step()                 # may re-plan: every rank at the same step
        return self._one_step(x, y, loss, opt, lr, global_batch, context, communicate, weights)

    def _one_step(self, x, y, loss, opt, lr, global_batch, context, communicate, weights):
        self._mid_step = not communicate
        self._ready.start()
        self.strategy.start_step()                  # blocking: the previous step's update
        norm = global_batch if global_batch is not None else len(x) * self.comm.size
        before, after = self.strategy.forward_hooks(communicate)
        overlapped = self._engine is not None and communicate
        # A rank with no samples (a last partial batch smaller than the rank count) still takes
        # part in every reduction; with --sync-bn it runs the empty batch through the model so
        # that it joins the batch-norm reductions too.
        if len(x) == 0 and not self._sync_bn:
            if before:
                for i in range(len(self.model.layers)):
                    before(i)
            for _, g in self.model.named_grads():
                g[...] = 0
            if overlapped:                          # post everything in the usual order
                self.strategy.empty_backward()
            self._backprop_done(lr, communicate)
            return 0.0, 0
        logits = self.model.forward(x, train=True, context=context, before_layer=before,
                                    after_layer=after if overlapped else None)
        value = loss.forward(logits, y, weights=weights, normalizer=norm)
        value = value + self.model.regularization_loss() / self.comm.size
        correct = (logits.argmax(axis=1) == y).sum()
        self.model.backward(loss.backward(), on_grad_ready=self._grad_ready if overlapped else None)
        self._backprop_done(lr, communicate)
        return value, correct

    def _backprop_done(self, lr: float, communicate: bool) -> None:
        if not communicate:                         # a micro-batch: keep its gradients
            if self.accumulated is None:
                self.accumulated = [b.buffer.copy() for b in self.buckets]
            else:
                for acc, b in zip(self.accumulated, self.buckets):
                    acc += b.buffer
            return
        self.stats.steps += 1
        self.step += 1
        if self.watch.synchronous:
            self.watch.clear()                      # each step is judged on its own
        self.strategy.step_end(lr)

    def _grad_ready(self, i: int) -> None:
        self._ready.mark(i, self.step)
        self.strategy.grad_ready(i)

    def layer_ready(self, i: int) -> None:
        """Layer i's gradients are final (what backprop reports), checked for the protocol."""
        self._grad_ready(i)

    # --- what every schedule does with a bucket -----------------------------------
    def check_finite_layer(self, i: int) -> None:
        """The same check for an FC-replicated layer's own gradients."""
        self.watch.record(self.step - 1, f"layer {i}", list(self.model.layers[i].grads.values()))

    def check_finite(self, b) -> None:
        """A reduced gradient is the same on every rank, so every rank decides alike: the
        caller skips or fails the step (trainer.check_step), now or one step later."""
        self.watch.record(self.step - 1, f"bucket {b.index} (layers {b.layers})", [b.buffer])

    def prepare(self, b) -> None:
        """Fold in accumulated micro-batches and fill the float16 wire copy."""
        if self.accumulated is not None:
            b.buffer += self.accumulated[b.index]
        if b.wire is not b.buffer:
            b.wire[...] = b.buffer
        if self.comm.size > 1:                     # a ring Allreduce sends 2 (P-1)/P n bytes
            self.stats.bytes += int(2 * (self.comm.size - 1) * b.wire.nbytes // self.comm.size)

    def unpack(self, b) -> None:
        if b.wire is not b.buffer:
            b.buffer[...] = b.wire

    def complete(self, b) -> None:
        """Wait for bucket b's posted reduction; account and trace it."""
        t0 = time.perf_counter()
        b.handle.wait()
        t1 = time.perf_counter()
        self.stats.exposed_s += t1 - t0
        self.stats.comm_s += b.handle.done_at - b.posted_at
        if self.tracer is not None:
            trace.reduction(self.tracer, b, b.posted_at, b.handle.done_at, t0, t1,
                            step=b.posted_step)
        b.handle = None
        if self.watchdog is not None:
            self.watchdog.disarm(b.watch)
        self.unpack(b)

    # --- between steps ----------------------------------------------------------
    def flush(self) -> None:
        """Complete every pending reduction and deferred update."""
        if self.strategy is not None:
            self.strategy.flush()

    def discard(self) -> None:
        """Drop the last step's update and running statistics (its reductions still
        complete): --skip-nonfinite."""
        self.watch.clear()
        for (_, b), saved in zip(self.model.named_buffers(), self._buffers_before or ()):
            b[...] = saved
        self.strategy.discard()

    def close(self, flush: bool = True, abandon: bool = False) -> None:
        """Finish pending work (unless the run failed) and stop the communication thread.
        ``abandon``: the ranks posted different collectives, so what is in flight may never
        complete: drop it rather than wait (the job is ended anyway)."""
        if flush:
            self.flush()
        if self._engine is not None:
            self._engine.close(wait=not abandon)
