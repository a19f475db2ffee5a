"""DataParallel: synchronous data-parallel SGD with gradient buckets (seed 000, Algorithms 2-3).

Losses are normalised by the *global* batch size, so summing local gradients over ranks
gives the exact global-batch mean gradient, even when slices differ in size. (That is also
the pre-division that keeps a float16 reduction from overflowing: every rank sends its
share of the mean, never a sum of P means.)

- ``blocking`` (Algorithm 2): backprop the whole model, Allreduce every bucket, update.
- ``overlap`` (Lee et al.): a bucket's Allreduce starts the moment its last layer's gradients
  are final (``on_grad_ready``) and runs while backprop continues below it; each layer's
  update is deferred to just before that layer runs in the next forward pass, so the
  reductions of the first layers (finished last) overlap the next forward too.
  ``flush()`` completes everything pending (end of training, evaluation, checkpoints).

Gradient accumulation: ``train_step(..., communicate=False)`` adds the micro-batch's
gradients to a local accumulator; the next ``communicate=True`` step folds it in before
its buckets are reduced, so only the last micro-batch communicates.
"""
from __future__ import annotations

import time

import numpy as np

from ..comm import build_buckets
from ..nn import BatchNorm
from .progress import CommThread, Poller

SCHEDULES = ("blocking", "overlap")
PROGRESS_MODES = ("thread", "poll")
GRAD_DTYPES = (None, "float32", "float16")


class OverlapStats:
    """Where communication time went: hidden behind computation or exposed (waited for)."""

    def __init__(self):
        self.steps = 0
        self.comm_s = 0.0        # sum over buckets of post -> completion
        self.exposed_s = 0.0     # time the main thread spent blocked on communication
        self.bytes = 0           # payload reduced by this rank

    @property
    def hidden_fraction(self) -> float:
        if self.comm_s <= 0:
            return 0.0
        return max(0.0, 1.0 - self.exposed_s / self.comm_s)

    def as_dict(self) -> dict:
        return {"steps": self.steps, "comm_s": self.comm_s, "exposed_s": self.exposed_s,
                "hidden_fraction": self.hidden_fraction,
                "bytes_per_step": self.bytes / max(self.steps, 1)}


class DataParallel:
    def __init__(self, model, comm, schedule: str = "overlap", bucket_mb: float = 4.0,
                 progress: str = "thread", sync_bn: bool = False, grad_dtype: str | None = None):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r} (choose {', '.join(SCHEDULES)})")
        if progress not in PROGRESS_MODES:
            raise ValueError(f"unknown progress mode {progress!r} (choose thread or poll)")
        if grad_dtype not in GRAD_DTYPES:
            raise ValueError(f"unknown gradient dtype {grad_dtype!r} (choose float32 or float16)")
        self.model, self.comm, self.schedule, self.progress = model, comm, schedule, progress
        self.buckets = build_buckets(model, bucket_mb)
        self.bucket_of = {i: b for b in self.buckets for i in b.layers}
        for b in self.buckets:          # what goes on the wire: the buffer, or a float16 copy
            b.wire = b.buffer if grad_dtype != "float16" else b.buffer.astype(np.float16)
        self.stats = OverlapStats()
        self._deferred: dict[int, float] = {}       # layer index -> lr of its pending update
        self._acc = None                            # per-bucket accumulated micro-batch grads
        self._opt = None
        self._sync_bn = sync_bn
        self._engine = None
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
                   context=None, communicate: bool = True):
        """Returns (this rank's share of the global mean loss, number correct locally)."""
        lr = opt.lr if lr is None else lr
        self._opt = opt
        norm = global_batch if global_batch is not None else len(x) * self.comm.size
        before = self._apply_deferred if self._deferred else None
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
            if overlapped:                          # post every bucket in the usual order
                for b in self.buckets:
                    for i in b.layers:
                        self._grad_ready(i)
            self._backprop_done(lr, communicate)
            return 0.0, 0
        logits = self.model.forward(x, train=True, context=context, before_layer=before)
        value = float(loss.forward(logits, y, normalizer=norm))
        value += self.model.regularization_loss() / self.comm.size
        correct = int((logits.argmax(axis=1) == y).sum())
        self.model.backward(loss.backward(), on_grad_ready=self._grad_ready if overlapped else None)
        self._backprop_done(lr, communicate)
        return value, correct

    def _backprop_done(self, lr: float, communicate: bool) -> None:
        if not communicate:                         # a micro-batch: keep its gradients
            if self._acc is None:
                self._acc = [b.buffer.copy() for b in self.buckets]
            else:
                for acc, b in zip(self._acc, self.buckets):
                    acc += b.buffer
            return
        self.stats.steps += 1
        if self._engine is None:                    # blocking, or a single rank
            t0 = time.perf_counter()
            for b in self.buckets:
                self._reduce_blocking(b)
            spent = time.perf_counter() - t0
            self.stats.comm_s += spent
            self.stats.exposed_s += spent
            self._acc = None
            self._opt.step(lr)
            return
        self._deferred = {i: lr for b in self.buckets for i in b.layers}

    def _prepare(self, b) -> None:
        """Fold in accumulated micro-batches and fill the float16 wire copy."""
        if self._acc is not None:
            b.buffer += self._acc[b.index]
        if b.wire is not b.buffer:
            b.wire[...] = b.buffer
        if self.comm.size > 1:
            self.stats.bytes += int(b.wire.nbytes)

    def _unpack(self, b) -> None:
        if b.wire is not b.buffer:
            b.buffer[...] = b.wire

    def _reduce_blocking(self, b) -> None:
        self._prepare(b)
        self.comm.allreduce(b.wire)
        self._unpack(b)

    def _grad_ready(self, i: int) -> None:
        b = self.bucket_of.get(i)
        if b is None:
            return
        b.pending.discard(i)
        if not b.pending:
            self._prepare(b)
            b.posted_at = time.perf_counter()
            b.handle = self._engine.submit(b.wire)
            b.reset()
            if b.index == len(self.buckets) - 1:
                self._acc = None                    # every bucket has taken its share
        self._engine.poll()

    def _apply_deferred(self, i: int) -> None:
        self._engine.poll()
        lr = self._deferred.pop(i, None)
        if lr is None:
            return
        b = self.bucket_of[i]
        if b.handle is not None:
            t0 = time.perf_counter()
            b.handle.wait()
            self.stats.exposed_s += time.perf_counter() - t0
            self.stats.comm_s += b.handle.done_at - b.posted_at
            b.handle = None
            self._unpack(b)
        self._opt.update(i, lr)

    def flush(self) -> None:
        """Complete every pending reduction and deferred update."""
        for i in sorted(self._deferred):
            self._apply_deferred(i)

    def close(self) -> None:
        self.flush()
        if self._engine is not None:
            self._engine.close()
