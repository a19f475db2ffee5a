"""Gradient buckets: flat buffers whose views *are* the layers' gradients.

Parameters are grouped in reverse layer order (the order backprop finishes them)
up to a byte cap. Each layer's ``grads`` entries are rebound to views into its
bucket's buffer, so the layers write gradients straight into the memory that is
communicated: no copy before an Allreduce. Every rank builds identical buckets.
"""
from __future__ import annotations

from ..nn.flat import flatten


class Bucket:
    def __init__(self, index: int, buffer, layers: list[int], entries: list[tuple]):
        self.index = index
        self.buffer = buffer                   # flat, contiguous
        self.layers = layers                   # layer indices whose grads live here
        self.entries = entries                 # (layer index, param name, offset, size, shape)
        self.pending = set(layers)             # layers whose grads are not final yet this step
        self.handle = None                     # in-flight reduction
        self.posted = False                    # reduced (or in flight) for the update now due
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
    Rebuilding is allowed between steps: the gradients are copied into the new buffers.
    The buckets are also left on the model as ``model.grad_layout``: the optimiser updates a
    bucket's layers in one pass over its buffer (optim/flat.py) and follows a rebuild."""
    if groups is None:
        groups = groups_by_cap(model, bucket_mb, exclude)
    buckets = []
    for b, layers in enumerate(groups):
        buffer, entries = flatten(model, layers, "grads")
        buckets.append(Bucket(b, buffer, layers, entries))
    model.grad_layout = buckets
    return buckets
