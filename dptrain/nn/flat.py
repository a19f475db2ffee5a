"""Flat storage: one buffer holding several layers' parameters (or gradients) as views.

A model's parameters live in one flat buffer from its construction (``flat_params``), in
reverse layer order -- the order backprop finishes layers and communication buckets group
them -- and each layer's in the order of its ``params``; each ``layer.params`` entry is a
view into it. So a run of layers is a contiguous slice, and the optimiser (optim/flat.py)
updates many parameters with one element-wise pass instead of one per parameter. The
parameters never move afterwards: what holds them (a captured CUDA graph, a test) stays valid.
Gradient buckets (comm/buckets.py) use the same layout for their gradients.
"""
from __future__ import annotations

from ..backend import get_array_module


def parametrised_layers(model) -> list[int]:
    """Indices of the layers with parameters, in reverse order."""
    return [i for i in range(len(model.layers) - 1, -1, -1) if model.layers[i].params]


def flatten(model, layers, attr: str) -> tuple:
    """One flat buffer for the ``attr`` arrays ("params" or "grads") of ``layers``, in that
    order and each layer's in its dict's order: the values are copied in and the dict entries
    rebound to views. Returns (buffer, entries), entries (layer, name, offset, size, shape)."""
    arrays = [(i, name, a) for i in layers for name, a in getattr(model.layers[i], attr).items()]
    first = arrays[0][2]
    buffer = get_array_module(first).zeros(sum(int(a.size) for *_, a in arrays), dtype=first.dtype)
    entries, offset = [], 0
    for i, name, a in arrays:
        view = buffer[offset:offset + a.size].reshape(a.shape)
        view[...] = a
        getattr(model.layers[i], attr)[name] = view
        entries.append((i, name, offset, int(a.size), a.shape))
        offset += int(a.size)
    return buffer, entries


def flat_params(model) -> tuple:
    """(buffer, entries) of the model's parameters, flattening them on first use (Sequential
    does so as it is built; other models when an optimiser first needs it)."""
    flat = getattr(model, "param_flat", None)
    if flat is None:
        layers = parametrised_layers(model)
        flat = flatten(model, layers, "params") if layers else (None, [])
        model.param_flat = flat
    return flat
