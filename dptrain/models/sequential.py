"""Sequential: a list of layers run in order, with the hooks data parallelism needs.

    model.forward(x, train, context=None, before_layer=None)
    model.backward(dlogits, on_grad_ready=None, before_layer=None, after_layer=None)

``before_layer(i)`` runs just before layer i computes in the forward pass (the
overlap schedule applies deferred updates there), ``after_layer(i)`` just after it (FC
replication posts the gather of the layer's input there); in backprop the same two hooks
bracket each layer's backward (the per-layer profile times them); ``on_grad_ready(i)`` runs the
moment layer i's gradients are final in backprop (reverse order), so their
Allreduce can start while earlier layers are still being differentiated.
Parameters are named "<layer-index>.<param>" and ordered identically on every rank.
"""
from __future__ import annotations

import time

import numpy as np

from .. import backend
from ..backend import to_numpy
from ..nn.fusion import link_bn_relu_pool
from .flat import flat_params
from .summary import Summary


class Sequential:
    """A model: ``layers`` run in order on per-sample ``input_shape`` (C, H, W); initial
    parameters drawn from ``seed``; the hooks above for data parallelism."""

    def __init__(self, layers, input_shape, seed: int = 0, name: str = "sequential"):
        self.layers = list(layers)
        self.input_shape = tuple(input_shape)
        self.name = name
        self.dtype = backend.dtype
        self.tracer = None                    # parallel.trace.Tracer, when --trace is on
        rng = np.random.default_rng(seed)
        shape = self.input_shape
        self.shapes = []                      # per-sample output shape of each layer
        for i, layer in enumerate(self.layers):
            layer.index = i
            layer.initialize(rng)
            shape = layer.output_shape(shape)
            self.shapes.append(shape)
        flat_params(self)                     # one flat buffer, the optimiser's layout (flat.py)
        # With the bn_relu_pool kernels, BatchNorm -> ReLU -> MaxPool2D run as one kernel.
        link_bn_relu_pool(self.layers)
        # Up to the first layer with parameters, input gradients would be wasted work.
        for layer in self.layers:
            layer.needs_input_grad = False
            if layer.params:
                break

    @property
    def output_shape(self):
        return self.shapes[-1] if self.shapes else self.input_shape

    # --- computation -----------------------------------------------------
    def forward(self, x, train: bool = False, context=None, before_layer=None, after_layer=None):
        tracer = self.tracer if train and self.tracer is not None and self.tracer.active else None
        for i, layer in enumerate(self.layers):
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

    def backward(self, dlogits, on_grad_ready=None, before_layer=None, after_layer=None):
        tracer = self.tracer if self.tracer is not None and self.tracer.active else None
        dy = dlogits
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
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
            if dy is None:           # nothing below this layer has parameters
                break
        return dy

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
            arr[...] = backend.get_array_module(arr).asarray(value, dtype=arr.dtype)

    def summary(self, input_shape=None, batch_size: int = 1) -> Summary:
        return Summary.of(self, input_shape or self.input_shape, batch_size)

    def __repr__(self):
        return f"Sequential({self.name}, {len(self.layers)} layers, {self.num_params():,} params)"
