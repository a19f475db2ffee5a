"""The tests' finite-difference helpers: the package's own (dptrain/model_check/gradients.py),
which `dptrain check` runs on a user's model."""
from dptrain.model_check.gradients import (EPS, MAX_ENTRIES, check_layer,  # noqa: F401
                                           layer_errors, numeric_grad, rel_error)


def check_model(model, x, y, rng, inspect=None) -> None:
    """Backprop through a whole model (softmax cross-entropy on ``x``, ``y``) against finite
    differences, parameter by parameter; ``inspect(model)`` runs after the first forward pass
    (to assert which paths the layers took)."""
    import numpy as np
    from dptrain import nn
    from dptrain.nn import BatchContext
    loss = nn.SoftmaxCrossEntropy()
    ctx = BatchContext(np.arange(len(x)), step=0)

    def f():
        return float(loss.forward(model.forward(x, True, ctx), y))

    f()
    if inspect is not None:
        inspect(model)
    model.backward(loss.backward())
    grads = dict(model.named_grads())
    for name, p in model.named_params():
        grad = grads[name].copy()
        idx, num = numeric_grad(f, p, rng)
        analytic = grad.reshape(-1)[idx]
        # a conv bias followed by BatchNorm has an exactly zero gradient: compare absolutely
        assert rel_error(analytic, num) < 1e-6 or np.abs(analytic - num).max() < 1e-8, name
