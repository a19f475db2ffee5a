"""Sequential: a chain of layers and residual blocks, with the hooks data parallelism needs.

    model.forward(x, train, context=None, before_layer=None)
    model.backward(dlogits, on_grad_ready=None, before_layer=None, after_layer=None)

``before_layer(i)`` runs just before layer i computes in the forward pass (the
overlap schedule applies deferred updates there), ``after_layer(i)`` just after it (FC
replication posts the gather of the layer's input there); in backprop the same two hooks
bracket each layer's backward (the per-layer profile times them); ``on_grad_ready(i)`` runs the
moment layer i's gradients are final in backprop (reverse order), so their
Allreduce can start while earlier layers are still being differentiated.
Parameters are named "<layer-index>.<param>" and ordered identically on every rank.
Layer indices number the leaf layers in forward execution order, also inside residual
blocks (nn/containers.py), so the hooks see forward in increasing and backward in strictly
decreasing index order whatever the nesting.
"""
from __future__ import annotations

import time

import numpy as np

from ..backend import Backend, current, get_array_module, to_numpy
from ..nn.containers import (Residual, as_chain, chain_backward, chain_forward, layout, leaf_runs,
                             leaves, trace)
from ..nn.fusion import link_bn_relu_pool
from ..nn.flat import flat_params
from .summary import Summary


class Sequential:
    """Built from ``layers``: layers, nn.Residual blocks and nested lists (containers.py).
    ``self.layers`` is then the flat list of leaf layers in forward execution order,
    ``self.structure`` the nested items (for display); ``shapes[i]`` / ``input_shapes[i]``
    are leaf i's per-sample output and input shapes (a shortcut's first leaf takes its
    block's input). ``backend`` (array module, dtype, kernels) is what every layer creates its
    parameters with and computes with, and the optimiser follows; None: the process default."""

    def __init__(self, layers, input_shape, seed: int = 0, name: str = "sequential",
                 backend: Backend | None = None):
        self.structure = as_chain(layers, f"model {name!r}")
        self.layers = list(leaves(self.structure))
        self.input_shape = tuple(input_shape)
        self.name = name
        self.backend = backend if backend is not None else current()
        self.dtype = self.backend.dtype
        self.tracer = None                    # parallel.trace.Tracer, when --trace is on
        seen = set()
        for layer in self.layers:
            if id(layer) in seen:
                raise ValueError(f"layer {layer!r} appears twice in model {name!r} "
                                 "(shared layers are not supported: build one per use)")
            seen.add(id(layer))
        rng = np.random.default_rng(seed)
        self.shapes = []                      # per-sample output shape of each leaf
        self.input_shapes = []                # per-sample input shape of each leaf

        def build(layer, shape, depth):
            layer.index = len(self.shapes)
            layer.backend = self.backend
            layer.initialize(rng)
            out = tuple(layer.output_shape(shape))
            self.input_shapes.append(tuple(shape))
            self.shapes.append(out)
            return out
        self._output_shape = trace(self.structure, self.input_shape, build)
        flat_params(self)                     # one flat buffer, the optimiser's layout (flat.py)
        # With the bn_relu_pool kernels, BatchNorm -> ReLU -> MaxPool2D run as one kernel:
        # only where the three follow each other in one chain (not across a sum).
        for run in leaf_runs(self.structure):
            link_bn_relu_pool(run)
        # Up to the first item with parameters, input gradients would be wasted work; a
        # Residual's leaves always pass theirs on (to the sum).
        for item in self.structure:
            if isinstance(item, Residual):
                if item.has_params():
                    break
                continue
            item.needs_input_grad = False
            if item.params:
                break

    @property
    def output_shape(self):
        return self._output_shape

    # --- computation -----------------------------------------------------
    def forward(self, x, train: bool = False, context=None, before_layer=None, after_layer=None):
        tracer = self.tracer if train and self.tracer is not None and self.tracer.active else None

        def run(layer, x, train):
            i = layer.index
            if before_layer is not None:
                before_layer(i)
            layer.context = context
            if tracer is None:
                x = layer.forward(x, train)
            else:
                t0 = time.perf_counter()
                x = layer.forward(x, train)
                tracer.span(f"forward {i} {layer!r}", "forward", t0, time.perf_counter(), layer=i)
            if after_layer is not None:
                after_layer(i)
            return x
        return chain_forward(self.structure, x, train, run)

    def backward(self, dlogits, on_grad_ready=None, before_layer=None, after_layer=None):
        """Leaves in strictly decreasing index order; stops below the first parametrised
        item (returns None there)."""
        tracer = self.tracer if self.tracer is not None and self.tracer.active else None

        def run(layer, dy):
            i = layer.index
            if before_layer is not None:
                before_layer(i)
            t0 = time.perf_counter()
            dy = layer.backward(dy)
            if after_layer is not None:
                after_layer(i)
            if tracer is not None:
                tracer.span(f"backward {i} {layer!r}", "backward", t0, time.perf_counter(), layer=i)
            if on_grad_ready is not None and layer.params:
                on_grad_ready(i)
            return dy
        return chain_backward(self.structure, dlogits, run)

    def regularization_loss(self):
        return sum(layer.regularization_loss() for layer in self.layers)

    # --- parameters ------------------------------------------------------
    def named_params(self):
        for i, layer in enumerate(self.layers):
            for k, v in layer.params.items():
                yield f"{i}.{k}", v

    def named_grads(self):
        for i, layer in enumerate(self.layers):
            for k, v in layer.grads.items():
                yield f"{i}.{k}", v

    def named_buffers(self):
        for i, layer in enumerate(self.layers):
            for k, v in layer.buffers.items():
                yield f"{i}.{k}", v

    def num_params(self) -> int:
        return sum(int(v.size) for _, v in self.named_params())

    def state_dict(self) -> dict:
        """Host copies of every parameter and buffer, keyed "<layer-index>.<name>"."""
        out = {k: to_numpy(v).copy() for k, v in self.named_params()}
        out.update({k: to_numpy(v).copy() for k, v in self.named_buffers()})
        return out

    def load_state_dict(self, state: dict) -> None:
        """Copy values in place (views held by buckets stay valid); names and shapes must match."""
        own = dict(self.named_params())
        own.update(self.named_buffers())
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"state does not match model {self.name!r}: "
                             f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        for k, arr in own.items():
            value = np.asarray(state[k])
            if value.shape != arr.shape:
                raise ValueError(f"state entry {k!r} has shape {value.shape}, "
                                 f"model expects {arr.shape}")
            arr[...] = get_array_module(arr).asarray(value, dtype=arr.dtype)

    def layout(self) -> str:
        """Leaf kinds and their nesting in residual blocks (the start-up fingerprint)."""
        return layout(self.structure)

    def summary(self, input_shape=None, batch_size: int = 1) -> Summary:
        return Summary.of(self, input_shape or self.input_shape, batch_size)

    def __repr__(self):
        return f"Sequential({self.name}, {len(self.layers)} layers, {self.num_params():,} params)"
