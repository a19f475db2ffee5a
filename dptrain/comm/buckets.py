"""Gradient buckets: flat buffers whose views *are* the layers' gradients.

Parameters are grouped in reverse layer order (the order backprop finishes them)
up to a byte cap. Each layer's ``grads`` entries are rebound to views into its
bucket's buffer, so the layers write gradients straight into the memory that is
communicated: no copy before an Allreduce. Every rank builds identical buckets.
"""
from __future__ import annotations

from ..backend import get_array_module


class Bucket:
    def __init__(self, index: int, buffer, layers: list[int], entries: list[tuple]):
        self.index = index
        self.buffer = buffer                   # flat, contiguous
        self.layers = layers                   # layer indices whose grads live here
        self.entries = entries                 # (layer index, param name, offset, size, shape)
        self.pending = set(layers)             # layers whose grads are not final yet this step
        self.handle = None                     # in-flight reduction
        self.posted_at = 0.0                   # when it was handed to communication
        self.wire = buffer                     # what is reduced: the buffer or a float16 copy

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)

    def reset(self) -> None:
        self.pending = set(self.layers)

    def __repr__(self):
        return f"Bucket({self.index}, layers {self.layers}, {self.nbytes} bytes)"


def groups_by_cap(model, bucket_mb: float, exclude=()) -> list[list[int]]:
    """Layer indices per bucket: reverse layer order, a new bucket once the cap is reached."""
    cap = max(int(bucket_mb * 2**20), 1)
    groups, current, size = [], [], 0
    for i in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[i]
        if not layer.params or i in exclude:
            continue
        current.append(i)
        size += sum(int(g.nbytes) for g in layer.grads.values())
        if size >= cap:
            groups.append(current)
            current, size = [], 0
    if current:
        groups.append(current)
    return groups


def build_buckets(model, bucket_mb: float | None, exclude=(), groups=None) -> list[Bucket]:
    """Buckets over every parametrised layer except ``exclude`` (FC-replicated layers): by the
    byte cap, or as ``groups`` says (a plan: contiguous runs of layers in reverse order).
    Rebuilding is allowed between steps: the gradients are copied into the new buffers."""
    if groups is None:
        groups = groups_by_cap(model, bucket_mb, exclude)
    buckets = []
    for b, layers in enumerate(groups):
        first = model.layers[layers[0]].grads
        xp = get_array_module(next(iter(first.values())))
        dtype = next(iter(first.values())).dtype
        total = sum(int(g.size) for i in layers for g in model.layers[i].grads.values())
        buffer = xp.zeros(total, dtype=dtype)
        entries, offset = [], 0
        for i in layers:
            grads = model.layers[i].grads
            for name in list(grads):
                g = grads[name]
                view = buffer[offset:offset + g.size].reshape(g.shape)
                view[...] = g
                grads[name] = view
                entries.append((i, name, offset, int(g.size), g.shape))
                offset += int(g.size)
        buckets.append(Bucket(b, buffer, layers, entries))
    return buckets
