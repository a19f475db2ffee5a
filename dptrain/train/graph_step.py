"""--cuda-graph on: the whole training step (forward, loss, backward, reductions, update)
captured once as a CUDA graph and replayed at every step of the same shape.

A replay runs no Python: only the kernels and copies recorded at the capture, on the
addresses they had then. So the captured step must

- read its inputs from static buffers: the batch (x, labels, sample ids), the step number
  (dropout keys, nn/random.step_key) and the optimiser's per-step scalars (the learning
  rate; Adam's and AdaMax's bias corrections, Optimizer.device_scalars) are copied into
  buffers owned here before each replay, and the outputs (loss, correct count, gradient norms) are read
  from the arrays the capture returned;
- never read a device value on the host, synchronise, allocate outside the graph's
  private memory pool (graph_capture.py), or make a device array from host data (CuPy
  stages it in a pinned buffer that it frees again; fill on the device instead, as
  BatchNorm's count column does); the gradient-norm check (parallel/nonfinite.py)
  is recorded into output buffers whose host copies are queued after each replay;
- apply its update inside the step: eager steps defer it to the next step's start (so that
  --skip-nonfinite can drop it), a graph step applies it before it ends, the same
  arithmetic in the same order, so parameters are bitwise those of eager steps.

What the step does on the host (the step counters of DataParallel and of the optimiser) is
done here after each replay (``_host_effects``). A step of another shape (the last, partial
batch of an epoch) runs eagerly; so does everything when capture cannot work, said once on
rank 0 with the reason. Every decision depends on what all ranks share (the global batch
size, settings agreed at start-up, the outcome of a capture agreed over the ranks), so every
rank takes the same path and posts the same collectives in the same order.
"""
from __future__ import annotations

import sys

import numpy as np

from .. import nn
from ..backend import get_array_module
from ..optim import fused
from ..parallel import schedules
from ..parallel.nonfinite import squared_norm


def local_reason(*, capture, size: int, transport: str, schedule: str, auto: bool,
                 optimizer: str, accumulate: int, adaptive: bool, skip_nonfinite: int,
                 trace: bool, net_emulate: bool, fused_update: bool = True,
                 reads_step_count: bool = False,
                 capturable_transports=("nccl",)) -> str | None:
    """Why this rank cannot capture its steps (None: it can). ``fused_update``: the
    optimiser runs its fused kernels (optim/fused.py), which read the per-step scalars on
    the device; the array expressions of rules.py take the bias corrections from the host
    (``reads_step_count``: Optimizer.reads_step_count)."""
    if capture is None:
        return "no GPU: CUDA graphs need CuPy on a GPU"
    if reads_step_count and not fused_update:
        return (f"{optimizer}'s bias correction is computed from a step count kept on the "
                "host without the fused optimiser kernels (--kernels generic); a graph "
                "would repeat the first step's")
    if accumulate > 1:
        return "--accumulate splits each step into micro-batches"
    if adaptive:
        return "the adaptive sampler reads each step's per-sample losses on the host"
    if skip_nonfinite > 0:
        return "--skip-nonfinite reads the gradients' norms on the host inside each step"
    if trace:
        return "--trace times each layer on the host"
    if size > 1:
        if transport not in capturable_transports:
            return f"the {transport} transport reduces through host calls"
        if net_emulate:
            return "--net-emulate holds collectives on the host"
        if auto:
            return "--sync/--bucket-mb auto re-plans the reductions during training"
        if schedules.get(schedule).overlaps:
            return f"--sync {schedule} progresses its reductions from the host"
    return None


def agree(comm, reason: str | None) -> str | None:
    """The first reason of any rank (with its rank when there are several), on every rank."""
    reasons = sorted(comm.allreduce_obj([(comm.rank, reason)] if reason else []))
    if not reasons:
        return None
    rank, why = reasons[0]
    return why if comm.size == 1 else f"rank {rank}: {why}"


class _RecordedWatch:
    """Stands in for DataParallel's NonfiniteWatch while a step is captured: the squared
    norms are computed in the graph and kept, their host copies queued after each replay."""
    synchronous = False

    def __init__(self):
        self.norms: list[tuple[str, object]] = []

    def record(self, step, what, grads):
        norm2 = squared_norm(grads)
        if norm2 is not None:
            self.norms.append((what, get_array_module(grads[0]).asarray(norm2)))


class GraphStep:
    def __init__(self, dp, loss, opt, comm, capture, batch_size: int, seed: int,
                 reason: str | None = None, is_root: bool = True, comms=()):
        """``reason``: this rank's local reason not to capture (local_reason), agreed here
        over the ranks; ``comms``: NCCL communicators whose reductions the graph records."""
        self.dp, self.loss, self.opt, self.comm = dp, loss, opt, comm
        self.capture, self.batch_size, self.seed = capture, batch_size, seed
        self.is_root, self.comms = is_root, list(comms)
        self.disabled = agree(comm, reason)          # why every step runs eagerly, or None
        self._said: set[str] = set()
        self.graph = self.pool = self.outputs = None
        self.static = None                  # x, y, sample ids, step, per-step scalars
        self._warmed = False
        self.launches = self.eager_steps = 0
        if self.disabled:
            self._say("all", f"every step runs eagerly: {self.disabled}")

    # --- messages -------------------------------------------------------------------
    def _say(self, kind: str, text: str) -> None:
        """One line per kind of fallback, on rank 0 (every rank decides alike)."""
        if kind in self._said:
            return
        self._said.add(kind)
        if self.is_root:
            print(f"dptrain: note: --cuda-graph on: {text}", file=sys.stderr, flush=True)

    # --- one step -------------------------------------------------------------------
    def train_step(self, x, y, loss, opt, lr, global_batch, context=None, communicate=True,
                   weights=None):
        """DataParallel.train_step's contract: (loss share, correct) as 0-d arrays."""
        if self._why_eager(global_batch, communicate, weights, context) is not None:
            self.eager_steps += 1
            return self.dp.train_step(x, y, loss, opt, lr=lr, global_batch=global_batch,
                                      context=context, communicate=communicate, weights=weights)
        self.dp.flush()                 # an eager step's deferred update, as eager would now
        if self.static is None:
            self._allocate_static(x, y, context)
        self._fill(x, y, lr, context)
        if not self._warmed:
            # the first step runs what the graph will record, eagerly: every kernel is then
            # compiled and loaded, and the optimiser's state allocated, before the capture
            self._warmed = True
            self.eager_steps += 1
            return self._body(global_batch)
        if self.graph is None:
            if self._capture(global_batch) is not None:
                self.eager_steps += 1
                return self.dp.train_step(x, y, loss, opt, lr=lr, global_batch=global_batch,
                                          context=context)
        else:
            self.capture.launch(self.graph)
            self._host_effects()
        self.launches += 1
        self._note_norms()
        return self.outputs[0], self.outputs[1]

    def _why_eager(self, global_batch, communicate, weights, context) -> str | None:
        if self.disabled:
            return self.disabled
        if weights is not None or context is None or not communicate:
            self._say("kind", "steps with sample weights, micro-batches or no batch context "
                      "run eagerly (said once)")
            return "kind"
        if global_batch != self.batch_size:
            self._say("shape", f"a step of {global_batch} samples runs eagerly: the graph "
                      f"replays steps of {self.batch_size} (said once)")
            return "shape"
        return None

    # --- capture --------------------------------------------------------------------
    def _capture(self, global_batch) -> str | None:
        """Capture the step and launch it once (capture runs no kernel); on any rank's
        failure every rank undoes the capture's host effects and runs this step eagerly."""
        dp = self.dp
        counters = self._counters()
        real_watch = dp.watch
        recorded = dp.watch = _RecordedWatch()
        self.pool = self.capture.new_pool()
        error = None
        try:
            self.graph, outputs = self.capture.capture(
                lambda: self._body(global_batch), self.pool, self.comms)
        except Exception as exc:        # e.g. an operation CUDA refuses inside a capture
            error = f"{type(exc).__name__}: {exc}"
        finally:
            dp.watch = real_watch
        failed = agree(self.comm, None if error is None else f"capture failed ({error})")
        if failed:
            self._restore(counters)
            self.graph = self.pool = None
            self.disabled = failed
            self._say("all", f"every step runs eagerly: {failed}")
            return failed
        self.outputs = outputs + (recorded.norms,)
        self.capture.launch(self.graph)
        self._say("captured", f"step captured with a batch of {global_batch}; it is replayed "
                  "from now on")
        return None

    def _body(self, global_batch):
        """What the graph records: DataParallel's step, then its update at once, with the
        per-step scalars read from the static buffer (a graph bakes in host numbers)."""
        x, y, ids, step, lr = self.static
        context = nn.BatchContext(np.zeros(0, np.int64), 0, self.seed)
        context.sample_ids, context.step = ids, step            # device values
        value, correct = self.dp.train_step(x, y, self.loss, self.opt, lr=lr,
                                            global_batch=global_batch, context=context)
        self.dp.flush()
        xp = get_array_module(x)
        return xp.asarray(value), xp.asarray(correct)      # arrays (NumPy gives scalars)

    def _allocate_static(self, x, y, context) -> None:
        xp = get_array_module(x)
        # *_like: on the device and of the input's kind (the CPU tests' device stand-in);
        # scalars as reshaped 1-element arrays: CuPy's *_like reads shape=() as "x's shape"
        self.static = (xp.empty_like(x), xp.empty_like(y),
                       xp.empty_like(x, dtype=np.uint64, shape=(len(context.sample_ids),)),
                       xp.zeros_like(x, dtype=np.uint64, shape=(1,)).reshape(()),
                       xp.ones_like(x, shape=(fused.DYNAMIC_SCALARS,)))

    def _fill(self, x, y, lr, context) -> None:
        """The step's inputs into the buffers the graph reads (copies queued before it)."""
        xs, ys, ids, step, lrs = self.static
        xp = get_array_module(xs)
        xs[...] = x
        ys[...] = y
        ids[...] = xp.asarray(np.asarray(context.sample_ids, dtype=np.uint64))
        step.fill(context.step)
        # the scalars of the update this step makes: each parameter's count, plus one
        t = max(self.opt.step_counts(), default=0) + 1
        values = self.opt.device_scalars(lr, t)
        lrs[:len(values)] = xp.asarray(np.asarray(values, dtype=lrs.dtype))

    # --- what a replay does not do: the host's side of the step -------------------------
    def _counters(self):
        dp = self.dp
        return dp.step, dp.stats.steps, dp.strategy.snapshot(), self.opt.step_counts()

    def _restore(self, counters) -> None:
        dp = self.dp
        dp.step, dp.stats.steps, pending, ts = counters
        dp.strategy.restore(pending)
        self.opt.set_step_counts(ts)

    def _host_effects(self) -> None:
        """The counters the captured Python advanced once, advanced for this replay: the
        communicated steps and each parameter's update count (checkpoints store it)."""
        self.dp.step += 1
        self.dp.stats.steps += 1
        self.opt.count_replayed_step()

    def _note_norms(self) -> None:
        for what, norm2 in self.outputs[2]:
            self.dp.watch.note(self.dp.step - 1, what, norm2)


def for_trainer(trainer, capture=None, capturable_transports=("nccl",)):
    """The GraphStep of a trainer with --cuda-graph on (agreed over its ranks)."""
    from . import graph_capture
    cfg = trainer.cfg
    capture = capture if capture is not None else graph_capture.default()
    reason = local_reason(
        capture=capture, size=trainer.size, transport=trainer.transport,
        schedule=trainer.dp.schedule, auto=trainer.dp.auto is not None, optimizer=cfg.optimizer,
        accumulate=cfg.accumulate, adaptive=trainer.sampler.adaptive,
        skip_nonfinite=cfg.skip_nonfinite, trace=bool(cfg.trace), net_emulate=bool(cfg.net_emulate),
        fused_update=trainer.opt.fused_launcher(next(trainer.model.named_params())[1]) is not None,
        reads_step_count=trainer.opt.reads_step_count,
        capturable_transports=capturable_transports)
    comms = graph_capture.nccl_communicators(trainer.comm) if capture is not None \
        and trainer.size > 1 else []
    return GraphStep(trainer.dp, trainer.loss, trainer.opt, trainer.comm, capture, cfg.batch_size,
                     cfg.seed, reason, trainer.is_root, comms)
