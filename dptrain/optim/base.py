"""The optimiser contract.

An optimiser holds update rules and their state, not the model: it reads each layer's
``params`` and ``grads`` when it updates, so gradients may live in communication buckets.
``update(layer_index, lr)`` updates one layer, ``update_layers`` several (the overlap
schedule updates a bucket's layers just before the first of them runs in the next forward
pass); ``step()`` updates them all.

Parameters live in one flat buffer (nn/flat.py) and the state slots in buffers of the
same layout, so a run of parameters whose gradients are contiguous too -- a gradient bucket,
or the whole model without buckets (flat.py) -- is updated in one pass: one fused kernel on a
GPU (fused.py), the rule's array expressions over the whole run otherwise. State is per
parameter, including the step count used for bias correction, so per-layer updates are exact
and checkpoints keep one entry per parameter.
"""
from __future__ import annotations

import numpy as np

from ..backend import current, get_array_module, is_device_array, to_numpy
from . import fused
from .flat import FlatPlan

# Elements per NumPy pass (measured: dptrain bench --profile, docs/performance.md)
CPU_CHUNK = 1 << 16


class Optimizer:
    """The base of the update rules: ``model``'s params updated from its grads with learning
    rate ``lr`` and optional L2 ``weight_decay``; the contract in this module's docstring."""

    name = "optimizer"
    slot_names: tuple = ()          # per-parameter state arrays, e.g. ("m", "v")
    # Whether update_rule reads state["t"] (a bias correction): the host's count, which a
    # replayed CUDA graph would freeze at the capture; only a fused kernel reads it on the
    # device (device_scalars), so such a rule without its kernel runs eagerly.
    reads_step_count = False

    def __init__(self, model, lr: float, weight_decay: float = 0.0, **hyper):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.model = model
        # The model's backend (its kernel choice) decides whether the fused kernel runs
        self.backend = getattr(model, "backend", None) or current()
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.hyper = hyper
        self._plan = None                   # flat.FlatPlan: the update passes
        self._slots = None                  # slot name -> flat buffer, the parameters' layout
        self._t: list[int] = []             # updates so far, per parameter (entry)
        self._ones_by_dtype = {}            # dtype -> fused kernels' dyn for host scalars

    # --- the update rule ------------------------------------------------------------
    def update_rule(self, w, g, state: dict, lr: float) -> None:
        """Update ``w`` in place from ``g``; ``state`` holds the slots (arrays shaped like
        ``w``, updated in place) and ``t``. Called on whole flat runs of parameters."""
        raise NotImplementedError

    # An optional fused CUDA kernel: a rule that defines ``kernel`` (its name in fused.py's
    # source and its scalars) runs it on a GPU; a rule without one runs ``update_rule`` there.
    kernel = None   # def kernel(self, lr, t) -> (name, scalars); t None: device_scalars read

    @classmethod
    def has_fused_kernel(cls) -> bool:
        return cls.kernel is not None

    def fused_launcher(self, w):
        """How this optimiser's fused kernel runs on ``w`` (fused.py), or None for the array
        code of update_rule: a rule without a kernel, or a backend that leaves them out."""
        return fused.launcher_for(w, self.backend) if self.has_fused_kernel() else None

    def device_scalars(self, lr: float, t: int) -> tuple:
        """The per-step scalars a replayed CUDA graph reads on the device (fused.py's dyn):
        the learning rate, and whatever else changes with ``t``."""
        return (lr,)

    def _ones(self, w):
        """Ones on ``w``'s device: the fused kernels' dyn for scalars given on the host."""
        one = self._ones_by_dtype.get(w.dtype)
        if one is None:
            one = get_array_module(w).ones(fused.DYNAMIC_SCALARS, dtype=w.dtype)
            self._ones_by_dtype[w.dtype] = one
        return one

    # --- step counts, for what replays a step without running this code (a CUDA graph) ---
    def step_counts(self) -> list[int]:
        """Each parameter's update count (the ``t`` of bias correction and checkpoints)."""
        return list(self._t)

    def set_step_counts(self, counts) -> None:
        self._t = list(counts)

    def count_replayed_step(self) -> None:
        """A replayed full step updated every parameter once more."""
        self._t = [t + 1 for t in self._t]

    # --- flat buffers -----------------------------------------------------------------
    def _ensure_plan(self) -> FlatPlan:
        """The plan of update passes, made again when the gradient buckets were rebuilt."""
        if self._plan is None or not self._plan.valid(self.model):
            self._plan = FlatPlan(self.model)
            if self._slots is None:
                params = self._plan.params
                self._slots = {s: get_array_module(params).zeros_like(params)
                               for s in self.slot_names}
                self._t = [0] * len(self._plan.entries)
        return self._plan

    def _update_entries(self, run, first: int, end: int, lr: float) -> None:
        """Update parameter entries [first, end) of a run: one pass per stretch of equal
        ``t`` (normally the whole range)."""
        plan, ts = self._plan, self._t
        while first < end:
            t, stop = ts[first], first + 1
            while stop < end and ts[stop] == t:
                stop += 1
            t += 1
            ts[first:stop] = [t] * (stop - first)
            lo, hi = plan.offsets(first, stop)
            w, g = plan.params[lo:hi], run.grads[lo - run.lo:hi - run.lo]
            self._one_pass(w, g, [self._slots[s][lo:hi] for s in self.slot_names], t, lr)
            first = stop

    def _one_pass(self, w, g, slots: list, t: int, lr: float) -> None:
        launch = self.fused_launcher(w)
        dyn = lr if getattr(lr, "ndim", 0) == 1 else None   # device scalars: a CUDA graph's
        if launch is not None:
            if dyn is not None:
                kernel, scalars = self.kernel(1.0, None)
            else:
                kernel, scalars = self.kernel(lr, t)
                dyn = self._ones(w)
            fused.update(launch, kernel, scalars, w, g, slots, self.weight_decay, dyn)
            return
        if dyn is not None:         # the array rules read the learning rate there; t is host's
            lr = dyn[0]
        # On the CPU in cache-sized pieces: a rule makes several temporaries, and over a whole
        # bucket each would be a fresh multi-MB allocation streamed through memory.
        step = CPU_CHUNK if not is_device_array(w) else max(int(w.size), 1)
        for lo in range(0, w.size, step):
            wc, gc = w[lo:lo + step], g[lo:lo + step]
            if self.weight_decay:
                gc = gc + self.weight_decay * wc
            self.update_rule(wc, gc, {"t": t, **{s: a[lo:lo + step]
                                                 for s, a in zip(self.slot_names, slots)}}, lr)

    def update_layers(self, layer_indices, lr: float | None = None) -> None:
        """Update these layers; those adjacent in one gradient bucket take a single pass."""
        lr = self.lr if lr is None else lr
        for run, first, end in self._ensure_plan().pieces(layer_indices):
            self._update_entries(run, first, end, lr)

    def update(self, layer_index: int, lr: float | None = None) -> None:
        self.update_layers((layer_index,), lr)

    def step(self, lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        for run in self._ensure_plan().runs:
            self._update_entries(run, run.first, run.end, lr)

    @property
    def state(self) -> dict:
        """{"layer.name": {"t": t, slot: view}} for every parameter updated at least once."""
        if self._plan is None:
            return {}
        out = {}
        for k, (i, name, offset, size, shape) in enumerate(self._plan.entries):
            if self._t[k] > 0:
                out[f"{i}.{name}"] = {"t": self._t[k], **{
                    s: buf[offset:offset + size].reshape(shape) for s, buf in self._slots.items()}}
        return out

    # --- checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"name": self.name, "lr": self.lr, "weight_decay": self.weight_decay,
                "hyper": dict(self.hyper),
                "state": {k: {s: (v if s == "t" else to_numpy(v).copy()) for s, v in st.items()}
                          for k, st in self.state.items()}}

    def load_state_dict(self, d: dict) -> None:
        if d.get("name") != self.name:
            raise ValueError(f"optimiser state is for {d.get('name')!r}, not {self.name!r}")
        self.lr, self.weight_decay = float(d["lr"]), float(d["weight_decay"])
        plan = self._ensure_plan()
        self._t = [0] * len(plan.entries)           # parameters without saved state start afresh
        for buf in self._slots.values():
            buf[...] = 0
        where = {f"{i}.{name}": k for k, (i, name, *_) in enumerate(plan.entries)}
        for key, st in d["state"].items():
            if key not in where:
                raise ValueError(f"optimiser state for {key!r}: the model has no such parameter")
            k = where[key]
            _, _, offset, size, _ = plan.entries[k]
            self._t[k] = int(st.get("t", 0))
            for s, value in st.items():
                if s in self._slots:
                    self._slots[s][offset:offset + size] = get_array_module(self._slots[s]).asarray(
                        np.asarray(value), dtype=self._slots[s].dtype).reshape(-1)
