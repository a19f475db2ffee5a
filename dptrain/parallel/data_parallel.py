"""DataParallel: synchronous data-parallel SGD with gradient buckets (seed 000, Algorithms 2-3).

Losses are normalised by the *global* batch size, so summing local gradients over ranks
gives the exact global-batch mean gradient, even when slices differ in size.

- ``blocking`` (Algorithm 2): backprop the whole model, Allreduce every bucket, update.
- ``overlap`` (Lee et al.): a bucket's Allreduce starts the moment its last layer's gradients
  are final (``on_grad_ready``) and runs while backprop continues below it; each layer's
  update is deferred to just before that layer runs in the next forward pass, so the
  reductions of the first layers (finished last) overlap the next forward too.
  ``flush()`` completes everything pending (end of training, evaluation, checkpoints).
"""
from __future__ import annotations

import numpy as np

from ..comm import build_buckets
from ..nn import BatchNorm
from .progress import CommThread, Poller

SCHEDULES = ("blocking", "overlap")
PROGRESS_MODES = ("thread", "poll")


class DataParallel:
    def __init__(self, model, comm, schedule: str = "overlap", bucket_mb: float = 4.0,
                 progress: str = "thread", sync_bn: bool = False):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} (choose {', '.join(SCHEDULES)})")
        if progress not in PROGRESS_MODES:
            raise ValueError(f"unknown progress mode {progress!r} (choose thread or poll)")
        self.model, self.comm, self.schedule, self.progress = model, comm, schedule, progress
        self.buckets = build_buckets(model, bucket_mb)
        self.bucket_of = {i: b for b in self.buckets for i in b.layers}
        self._deferred: dict[int, float] = {}       # layer index -> lr of its pending update
        self._opt = None
        self._engine = None
        self._sync_bn = sync_bn
        if schedule == "overlap" and comm.size > 1:
            self._engine = CommThread(comm.dup()) if progress == "thread" else Poller(comm)
        if sync_bn:
            for layer in model.layers:
                if isinstance(layer, BatchNorm):
                    layer.sync = self._sum_over_ranks

    def _sum_over_ranks(self, a):
        out = np.array(a, copy=True)
        self.comm.allreduce(out)
        return out

    def broadcast_parameters(self, root: int = 0) -> None:
        """Every replica starts from rank ``root``'s parameters and buffers."""
        for _, arr in list(self.model.named_params()) + list(self.model.named_buffers()):
            self.comm.bcast(arr, root=root)

    # --- one step ------------------------------------------------------------
    def train_step(self, x, y, loss, opt, lr: float | None = None, global_batch: int | None = None,
                   context=None):
        """Returns (this rank's share of the global mean loss, number correct locally)."""
        lr = opt.lr if lr is None else lr
        self._opt = opt
        norm = global_batch if global_batch is not None else len(x) * self.comm.size
        before = self._apply_deferred if self._deferred else None
        # A rank with no samples (a last partial batch smaller than the rank count) still takes
        # part in every reduction; with --sync-bn it runs the empty batch through the model so
        # that it joins the batch-norm reductions too.
        if len(x) == 0 and not self._sync_bn:
            value, correct = 0.0, 0
            if before:
                for i in range(len(self.model.layers)):
                    before(i)
            for _, g in self.model.named_grads():
                g[...] = 0
            self._backprop_done(lr, empty=True)
            return value, correct
        logits = self.model.forward(x, train=True, context=context, before_layer=before)
        value = float(loss.forward(logits, y, normalizer=norm))
        value += self.model.regularization_loss() / self.comm.size
        correct = int((logits.argmax(axis=1) == y).sum())
        ready = self._grad_ready if self._engine is not None else None
        self.model.backward(loss.backward(), on_grad_ready=ready)
        self._backprop_done(lr)
        return value, correct

    def _backprop_done(self, lr: float, empty: bool = False) -> None:
        if self._engine is None:                     # blocking, or a single rank
            for b in self.buckets:
                self.comm.allreduce(b.buffer)
            self._opt.step(lr)
            return
        if empty:                                    # post every bucket in the usual order
            for b in self.buckets:
                for i in b.layers:
                    self._grad_ready(i)
        self._deferred = {i: lr for b in self.buckets for i in b.layers}

    def _grad_ready(self, i: int) -> None:
        b = self.bucket_of.get(i)
        if b is None:
            return
        b.pending.discard(i)
        if not b.pending:
            b.handle = self._engine.submit(b.buffer)
            b.reset()
        if isinstance(self._engine, Poller):
            self._engine.poll()

    def _apply_deferred(self, i: int) -> None:
        if isinstance(self._engine, Poller):
            self._engine.poll()
        lr = self._deferred.pop(i, None)
        if lr is None:
            return
        b = self.bucket_of[i]
        if b.handle is not None:
            b.handle.wait()
            b.handle = None
        self._opt.update(i, lr)

    def flush(self) -> None:
        """Complete every pending reduction and deferred update."""
        for i in sorted(self._deferred):
            self._apply_deferred(i)

    def close(self) -> None:
        self.flush()
        if self._engine is not None:
            self._engine.close()
