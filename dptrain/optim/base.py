"""The optimiser contract.

An optimiser holds update rules, not parameters: it reads each layer's
``params`` and ``grads`` when it updates, so gradients may live in
communication buckets. ``update(layer_index, lr)`` updates one layer (the
overlap schedule defers each layer's update to just before its next forward);
``step()`` updates them all. State is per parameter, including the step count
used for bias correction, so per-layer updates are exact.
"""
from __future__ import annotations

import numpy as np

from ..backend import get_array_module, to_numpy


class Optimizer:
    name = "optimizer"
    slot_names: tuple = ()          # per-parameter state arrays, e.g. ("m", "v")

    def __init__(self, model, lr: float, weight_decay: float = 0.0, **hyper):
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        self.model = model
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.hyper = hyper
        self.state: dict[str, dict] = {}

    # --- the update rule, one parameter at a time ----------------------------
    def update_rule(self, w, g, state: dict, lr: float) -> None:
        raise NotImplementedError

    def _state_for(self, key, w) -> dict:
        st = self.state.get(key)
        if st is None:
            xp = get_array_module(w)
            st = {"t": 0}
            for s in self.slot_names:
                st[s] = xp.zeros_like(w)
            self.state[key] = st
        return st

    def update(self, layer_index: int, lr: float | None = None) -> None:
        layer = self.model.layers[layer_index]
        lr = self.lr if lr is None else lr
        for name, w in layer.params.items():
            g = layer.grads[name]
            if self.weight_decay:
                g = g + self.weight_decay * w
            st = self._state_for(f"{layer_index}.{name}", w)
            st["t"] += 1
            self.update_rule(w, g, st, lr)

    def step(self, lr: float | None = None) -> None:
        for i, layer in enumerate(self.model.layers):
            if layer.params:
                self.update(i, lr)

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
        params = dict(self.model.named_params())
        self.state = {}
        for key, st in d["state"].items():
            xp = get_array_module(params[key])
            self.state[key] = {s: (int(v) if s == "t" else xp.asarray(np.asarray(v), dtype=params[key].dtype))
                               for s, v in st.items()}
