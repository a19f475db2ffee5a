"""Central finite differences against a layer's backward, in float64."""
import numpy as np

EPS = 1e-6
MAX_ENTRIES = 60       # checked entries per tensor (random subset for large ones)


def rel_error(a, b) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-12))


def _entries(arr, rng):
    n = arr.size
    return range(n) if n <= MAX_ENTRIES else rng.choice(n, MAX_ENTRIES, replace=False)


def numeric_grad(f, arr, rng):
    """(indices, d f / d arr at those indices) by central differences, arr modified in place."""
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


def check_layer(layer, x, rng, train=True, tol=1e-6):
    """Check dL/dx and every dL/dparam of L = sum(forward(x) * R) for a random R."""
    y = layer.forward(x, train)
    r = rng.standard_normal(y.shape)

    def f():
        return float((layer.forward(x, train) * r).sum())

    layer.forward(x, train)
    layer.needs_input_grad = True
    dx = layer.backward(r)
    analytic = {name: g.copy() for name, g in layer.grads.items()}
    errors = {}
    idx, num = numeric_grad(f, x, rng)
    errors["x"] = rel_error(dx.reshape(-1)[idx], num)
    for name, p in layer.params.items():
        idx, num = numeric_grad(f, p, rng)
        errors[name] = rel_error(analytic[name].reshape(-1)[idx], num)
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"{layer!r}: relative errors {bad}"
    return errors
