"""Containers: skip connections as data, run by the model that holds them.

    nn.Residual(branch, shortcut=None)     output = branch(x) + shortcut(x)

``branch`` and ``shortcut`` are chains: lists whose items are layers, Residual blocks (nesting
is allowed) or plain lists (a nested list is the same chain, concatenated in place). The
shortcut is the identity when None, or a projection such as [Conv2D 1x1 stride 2, BatchNorm].

A container holds no parameters itself. A model (models.Sequential) keeps the LEAF layers in
one flat list in forward execution order -- inside a Residual, the branch's leaves, then the
shortcut's -- and numbers them by their position there. Forward then visits leaves in
increasing index order, and backward in strictly decreasing order (the shortcut's leaves,
the branch's, then the sum of the two input gradients), which is what the data-parallel
hooks, gradient buckets and deferred updates rely on (docs/architecture.md).

The functions below walk a chain; ``run`` callbacks let the model wrap each leaf's forward or
backward in its hooks. No leaf may write into the ``dy`` it is given (or the ``x``): the
sum hands the same array to both sub-graphs (tests/nn/test_residual.py checks every layer).
"""
from __future__ import annotations

from .layer import Layer


def _direct_forward(layer, x, train):
    return layer.forward(x, train)


def _direct_backward(layer, dy):
    return layer.backward(dy)


def _is_leaf(item) -> bool:
    """An nn.Layer, or an object that follows its contract without subclassing it."""
    return isinstance(item, Layer) or all(callable(getattr(item, name, None)) for name in
                                          ("forward", "backward", "output_shape", "initialize"))


def spliced(items) -> list:
    """Nested plain lists and tuples spliced into one list (what they hold is not checked)."""
    out = []
    for item in items:
        out.extend(spliced(item) if isinstance(item, (list, tuple)) else [item])
    return out


def as_chain(items, where: str = "model") -> list:
    """The items as one chain: layers and Residual blocks, nested plain lists spliced in."""
    if is_item(items):
        items = [items]
    chain = spliced(items)
    for item in chain:
        if not is_item(item):
            raise TypeError(f"{where}: {item!r} is not a dptrain.nn layer, a Residual or a "
                            "list of them")
    return chain


class Residual:
    """A skip connection: the sum of ``branch(x)`` and ``shortcut(x)`` (``x`` itself when the
    shortcut is None). Both must give the same output shape."""

    def __init__(self, branch, shortcut=None):
        self.branch = as_chain(branch, "Residual branch")
        if not self.branch:
            raise ValueError("Residual needs at least one layer in its branch")
        self.shortcut = None if shortcut is None else as_chain(shortcut, "Residual shortcut")
        if self.shortcut == []:
            self.shortcut = None                 # an empty projection is the identity

    def leaves(self):
        yield from leaves(self.branch)
        if self.shortcut is not None:
            yield from leaves(self.shortcut)

    def has_params(self) -> bool:
        return any(leaf.params for leaf in self.leaves())

    def describe(self) -> str:
        """"residual block (layers 3-9)" once a model has numbered the leaves."""
        ids = [leaf.index for leaf in self.leaves()]
        if min(ids) < 0:
            return "residual block"
        return f"residual block (layers {min(ids)}-{max(ids)})"

    # --- shapes, forward, backward -----------------------------------------------
    def output_shape(self, in_shape) -> tuple:
        return trace([self], tuple(in_shape), lambda leaf, shape, depth: leaf.output_shape(shape))

    def forward(self, x, train: bool, run=_direct_forward):
        y = chain_forward(self.branch, x, train, run)
        s = x if self.shortcut is None else chain_forward(self.shortcut, x, train, run)
        return y + s                             # a new array: neither input is written

    def backward(self, dy, run=_direct_backward):
        ds = dy if self.shortcut is None else chain_backward(self.shortcut, dy, run)
        db = chain_backward(self.branch, dy, run)
        return db + ds

    def __repr__(self) -> str:
        kind = "identity" if self.shortcut is None else "projection"
        return f"Residual({len(self.branch)} items, {kind} shortcut)"


def is_item(obj) -> bool:
    """What a chain may hold: a leaf layer or a Residual block."""
    return isinstance(obj, Residual) or _is_leaf(obj)


def leaves(items):
    """The leaf layers of a chain in forward execution order."""
    for item in items:
        if isinstance(item, Residual):
            yield from item.leaves()
        else:
            yield item


def layout(items) -> str:
    """The nesting and leaf kinds, e.g. "Conv2D;Residual(Conv2D;BatchNorm|);ReLU" ("|" then the
    shortcut, empty for the identity): a chain's is its leaf kinds joined by ";"."""
    parts = []
    for item in items:
        if isinstance(item, Residual):
            side = "" if item.shortcut is None else layout(item.shortcut)
            parts.append(f"Residual({layout(item.branch)}|{side})")
        else:
            parts.append(type(item).__name__)
    return ";".join(parts)


def leaf_runs(items):
    """Runs of leaves that follow each other directly in one chain (a Residual ends a run),
    over every chain at any depth: what layer fusion may link."""
    run = []
    for item in items:
        if isinstance(item, Residual):
            if run:
                yield run
            run = []
            yield from leaf_runs(item.branch)
            if item.shortcut is not None:
                yield from leaf_runs(item.shortcut)
        else:
            run.append(item)
    if run:
        yield run


def trace(items, in_shape, visit, merged=None, depth: int = 0) -> tuple:
    """Per-sample shapes in forward order: ``visit(leaf, in_shape, depth)`` returns the leaf's
    output shape; ``merged(block, out_shape, depth)`` is called after each Residual's sum.
    Returns the chain's output shape; a sum of two different shapes is a ValueError."""
    shape = tuple(in_shape)
    for item in items:
        if isinstance(item, Residual):
            out = trace(item.branch, shape, visit, merged, depth + 1)
            side = shape if item.shortcut is None else trace(item.shortcut, shape, visit,
                                                              merged, depth + 1)
            if tuple(out) != tuple(side):
                kind = "identity shortcut" if item.shortcut is None else "shortcut"
                hint = "; a projection shortcut can match them" if item.shortcut is None else ""
                raise ValueError(f"{item.describe()}: the branch gives {tuple(out)} but the "
                                 f"{kind} gives {tuple(side)}, which cannot be summed{hint}")
            shape = tuple(out)
            if merged is not None:
                merged(item, shape, depth)
        else:
            shape = tuple(visit(item, shape, depth))
    return shape


def chain_forward(items, x, train: bool, run=_direct_forward):
    for item in items:
        x = item.forward(x, train, run) if isinstance(item, Residual) else run(item, x, train)
    return x


def chain_backward(items, dy, run=_direct_backward):
    """Backward through a chain in reverse; stops at None (nothing below needs a gradient)."""
    for item in reversed(items):
        dy = item.backward(dy, run) if isinstance(item, Residual) else run(item, dy)
        if dy is None:
            break
    return dy
