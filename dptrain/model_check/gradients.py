"""Central finite differences against a layer's backward, in float64.

For L = sum(forward(x) * R) with a fixed random R, backward(R) must give dL/dx and fill
dL/dparam; each is compared with (L(v + eps) - L(v - eps)) / (2 eps) at up to MAX_ENTRIES
entries per array. The relative error is |a - n| / (|a| + |n|) over those entries: about
1e-10 for a correct float64 backward, O(1) for a wrong one.

``leaf_inputs`` captures the input each leaf layer of a built model really sees (inside
residual blocks too), so every layer is checked on realistic values (a ReLU after a batch
norm sees both signs, a layer's input has the shape the model gives it).
"""
from __future__ import annotations

import numpy as np

EPS = 1e-6
MAX_ENTRIES = 60       # checked entries per array (a random subset of larger ones)


def rel_error(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def _entries(arr, rng):
    n = arr.size
    return range(n) if n <= MAX_ENTRIES else rng.choice(n, MAX_ENTRIES, replace=False)


def numeric_grad(f, arr, rng):
    """(indices, d f / d arr at those indices) by central differences, arr modified in place
    and restored."""
    flat = arr.reshape(-1)
    idx = list(_entries(arr, rng))
    out = []
    for i in idx:
        old = flat[i]
        flat[i] = old + EPS
        fp = f()
        flat[i] = old - EPS
        fm = f()
        flat[i] = old
        out.append((fp - fm) / (2 * EPS))
    return idx, np.array(out)


def layer_errors(layer, x, rng, train: bool = True) -> dict:
    """Relative errors of dL/dx ("x") and of every dL/dparam, by name. The layer computes its
    input gradient for the check whatever its place in the model."""
    r = rng.standard_normal(np.shape(layer.forward(x, train)))

    def loss():
        return float((layer.forward(x, train) * r).sum())

    needs = layer.needs_input_grad
    layer.needs_input_grad = True
    held = dict(layer.grads)
    x_before, r_before = np.array(x, copy=True), np.array(r, copy=True)
    try:
        layer.forward(x, train)
        dx = layer.backward(r)
    finally:
        layer.needs_input_grad = needs
    # a residual block hands the same array to its branch and its shortcut
    if not np.array_equal(x, x_before, equal_nan=True):
        raise ValueError("forward or backward wrote into its input x (work on a copy)")
    if not np.array_equal(r, r_before, equal_nan=True):
        raise ValueError("backward wrote into the dy it was given (work on a copy)")
    for name, g in held.items():
        # data parallelism swaps these arrays for views into its buckets: a rebound
        # gradient is never reduced, whatever its values
        if layer.grads.get(name) is not g:
            raise ValueError(f"backward rebound grads[{name!r}]: fill it in place "
                             f"(grads[{name!r}][...] = ...)")
    analytic = {name: np.array(g, copy=True) for name, g in layer.grads.items()}
    errors = {}
    idx, num = numeric_grad(loss, x, rng)
    errors["x"] = (float("inf") if dx is None or np.shape(dx) != np.shape(x)
                   else rel_error(np.asarray(dx).reshape(-1)[idx], num))
    for name, p in layer.params.items():
        idx, num = numeric_grad(loss, p, rng)
        errors[name] = (float("inf") if name not in analytic
                        else rel_error(analytic[name].reshape(-1)[idx], num))
    return errors


def check_layer(layer, x, rng, train: bool = True, tol: float = 1e-6) -> dict:
    """layer_errors, asserting each is below ``tol`` (the tests' form)."""
    errors = layer_errors(layer, x, rng, train)
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"{layer!r}: relative errors {bad}"
    return errors


def leaf_inputs(model, x, context=None) -> list:
    """A copy of the input each of ``model.layers`` receives in one training forward pass."""
    seen = [None] * len(model.layers)
    originals = []
    for i, layer in enumerate(model.layers):
        def recording(inp, train, _i=i, _forward=layer.forward):
            seen[_i] = np.array(inp, copy=True)
            return _forward(inp, train)
        originals.append(layer.__dict__.get("forward"))
        layer.forward = recording
    try:
        model.forward(x, train=True, context=context)
    finally:
        for layer, original in zip(model.layers, originals):
            if original is None:
                del layer.forward
            else:
                layer.forward = original
    return seen
