"""Each optimiser's first three updates against values computed by hand from its equations."""
import math

import numpy as np
import pytest

from dptrain import nn, optim
from dptrain.models import Sequential

GRADS = [np.array([0.5, -1.0]), np.array([0.2, 0.4]), np.array([-0.3, 0.1])]
W0 = np.array([1.0, -2.0])


def one_param_model():
    layer = nn.Dense(2, 1, bias=False)
    model = Sequential([layer], (2,))
    return model, layer


def run(name, **kw):
    model, layer = one_param_model()
    w = layer.params["W"].reshape(-1)
    w[...] = W0
    opt = optim.get(name, model, **kw)
    out = []
    for g in GRADS:
        layer.grads["W"].reshape(-1)[...] = g
        opt.step()
        out.append(w.copy())
    return out


def hand(rule, state, lr):
    w, out = W0.copy(), []
    for t, g in enumerate(GRADS, start=1):
        w = rule(w, g, state, lr, t)
        out.append(w.copy())
    return out


def sgd(w, g, s, lr, t):
    return w - lr * g


def momentum(w, g, s, lr, t, mu=0.9):
    s["v"] = mu * s.get("v", 0) - lr * g          # v <- gamma v - eta g ; w <- w + v
    return w + s["v"]


def nesterov(w, g, s, lr, t, mu=0.9):
    s["v"] = mu * s.get("v", 0) - lr * g
    return w + mu * s["v"] - lr * g


def adagrad(w, g, s, lr, t, eps=1e-10):
    s["G"] = s.get("G", 0) + g * g
    return w - lr * g / np.sqrt(s["G"] + eps)


def rmsprop(w, g, s, lr, t, gamma=0.9, eps=1e-8):
    s["v"] = gamma * s.get("v", 0) + (1 - gamma) * g * g
    return w - lr * g / np.sqrt(s["v"] + eps)


def adadelta(w, g, s, lr, t, rho=0.9, eps=1e-6):     # seed 003, eq. 52-56
    s["v"] = rho * s.get("v", 0) + (1 - rho) * g * g
    dw = -np.sqrt(s.get("s", 0) + eps) / np.sqrt(s["v"] + eps) * g
    s["s"] = rho * s.get("s", 0) + (1 - rho) * dw * dw
    return w + lr * dw


def adam(w, g, s, lr, t, b1=0.9, b2=0.999, eps=1e-8):   # seed 003, eq. 46-51
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["v"] = b2 * s.get("v", 0) + (1 - b2) * g * g
    m_hat, v_hat = s["m"] / (1 - b1 ** t), s["v"] / (1 - b2 ** t)
    return w - lr * m_hat / np.sqrt(v_hat + eps)


def adamax(w, g, s, lr, t, b1=0.9, b2=0.999, eps=1e-8):  # seed 004
    s["m"] = b1 * s.get("m", 0) + (1 - b1) * g
    s["u"] = np.maximum(b2 * s.get("u", 0), np.abs(g))
    return w - lr / (1 - b1 ** t) * s["m"] / (s["u"] + eps)


@pytest.mark.parametrize("name,rule,kw,lr", [
    ("sgd", sgd, {"lr": 0.1}, 0.1),
    ("momentum", momentum, {"lr": 0.1}, 0.1),
    ("nesterov", nesterov, {"lr": 0.1}, 0.1),
    ("adagrad", adagrad, {"lr": 0.5}, 0.5),
    ("rmsprop", rmsprop, {"lr": 0.01}, 0.01),
    ("adadelta", adadelta, {"lr": 1.0, "rho": 0.9}, 1.0),
    ("adam", adam, {"lr": 1e-3}, 1e-3),
    ("adamax", adamax, {"lr": 2e-3}, 2e-3),
])
def test_first_three_updates(float64, name, rule, kw, lr):
    got = run(name, **kw)
    want = hand(rule, {}, lr)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-15)


def test_adam_first_step_moves_by_lr(float64):
    """A closed form: with bias correction Adam's first step is lr * g/sqrt(g^2 + eps) ~ lr."""
    got = run("adam", lr=1e-3)[0]
    np.testing.assert_allclose(np.abs(got - W0), 1e-3, rtol=1e-6)


def test_weight_decay_adds_to_gradient(float64):
    got = run("sgd", lr=0.1, weight_decay=0.5)[0]
    np.testing.assert_allclose(got, W0 - 0.1 * (GRADS[0] + 0.5 * W0))


def test_state_dict_round_trip_continues_identically(float64):
    model, layer = one_param_model()
    opt = optim.get("adam", model, lr=0.01)
    layer.grads["W"][...] = 0.3
    opt.step()
    saved, w_saved = opt.state_dict(), layer.params["W"].copy()
    opt.step()
    after = layer.params["W"].copy()
    layer.params["W"][...] = w_saved
    fresh = optim.get("adam", model, lr=0.01)
    fresh.load_state_dict(saved)
    fresh.step()
    np.testing.assert_array_equal(layer.params["W"], after)


def test_per_layer_update_equals_step(float64):
    """The overlap schedule updates layer by layer; that must equal one step()."""
    from dptrain import models
    a, b = models.get("mlp", seed=1), models.get("mlp", seed=1)
    for m in (a, b):
        for _, g in m.named_grads():
            g[...] = 0.01
    oa, ob = optim.get("adam", a), optim.get("adam", b)
    oa.step()
    for i in reversed(range(len(b.layers))):
        if b.layers[i].params:
            ob.update(i)
    for (k, pa), (_, pb) in zip(a.named_params(), b.named_params()):
        np.testing.assert_array_equal(pa, pb, err_msg=k)


def test_unknown_optimizer_and_bad_lr():
    model, _ = one_param_model()
    with pytest.raises(ValueError, match="unknown optimizer 'adamw'"):
        optim.get("adamw", model)
    with pytest.raises(ValueError, match="learning rate must be positive"):
        optim.get("sgd", model, lr=0.0)


def test_schedules():
    s = optim.Schedule(1.0, "step", step_size=10, gamma=0.5)
    assert [s(0), s(9), s(10), s(25)] == [1.0, 1.0, 0.5, 0.25]
    c = optim.Schedule(1.0, "cosine", total_steps=100, min_lr=0.0)
    assert c(0) == 1.0 and math.isclose(c(50), 0.5) and math.isclose(c(100), 0.0, abs_tol=1e-12)
    w = optim.Schedule(0.4, "constant", warmup_steps=4)
    assert [w(0), w(1), w(3), w(4), w(100)] == [0.1, 0.2, 0.4, 0.4, 0.4]
    with pytest.raises(ValueError, match="unknown schedule"):
        optim.Schedule(1.0, "exp")
