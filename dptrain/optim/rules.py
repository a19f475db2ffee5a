"""Update rules, as written in the seeds: 003 eq. 46-56 (Adam, Adadelta) and 004's table.

Each ``update_rule`` modifies ``w`` in place from gradient ``g`` (a whole flat group of
parameters at a time); ``kernel`` names the fused CUDA kernel (fused.py) that computes the
same expressions in one pass, with its scalars. Where the
seeds put epsilon inside the square root (AdaGrad, RMSProp, Adadelta, Adam)
so do we; PyTorch adds it outside, which differs only for tiny second moments.
"""
from __future__ import annotations

from ..backend import get_array_module
from .base import Optimizer
from .registry import register


@register("sgd")
class SGD(Optimizer):
    """v <- gamma v - lr g; w <- w + v. Nesterov: w <- w + gamma v_new - lr g."""
    name = "sgd"

    def __init__(self, model, lr=0.05, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(model, lr, weight_decay, momentum=float(momentum), nesterov=bool(nesterov))
        self.slot_names = ("v",) if momentum else ()

    def update_rule(self, w, g, st, lr):
        mu = self.hyper["momentum"]
        if not mu:
            w -= lr * g
            return
        v = st["v"]
        v *= mu
        v -= lr * g
        if self.hyper["nesterov"]:
            w += mu * v - lr * g
        else:
            w += v

    def kernel(self, lr, t):
        mu = self.hyper["momentum"]
        if not mu:
            return "sgd", (lr,)
        return "momentum", (lr, mu, int(self.hyper["nesterov"]))


register("momentum", lambda model, **kw: SGD(model, momentum=kw.pop("momentum", 0.9), **kw),
         help="SGD with momentum (0.9 unless --momentum says otherwise)")
register("nesterov",
         lambda model, **kw: SGD(model, momentum=kw.pop("momentum", 0.9), nesterov=True, **kw),
         help="SGD with Nesterov momentum (0.9 unless --momentum says otherwise)")


@register("adagrad")
class AdaGrad(Optimizer):
    """G <- G + g^2; w <- w - lr g / sqrt(G + eps)."""
    name = "adagrad"
    slot_names = ("G",)

    def __init__(self, model, lr=0.01, eps=1e-10, weight_decay=0.0):
        super().__init__(model, lr, weight_decay, eps=float(eps))

    def update_rule(self, w, g, st, lr):
        xp = get_array_module(w)
        st["G"] += g * g
        w -= lr * g / xp.sqrt(st["G"] + self.hyper["eps"])

    def kernel(self, lr, t):
        return "adagrad", (lr, self.hyper["eps"])


@register("rmsprop")
class RMSProp(Optimizer):
    """v <- gamma v + (1 - gamma) g^2; w <- w - lr g / sqrt(v + eps)."""
    name = "rmsprop"
    slot_names = ("v",)

    def __init__(self, model, lr=0.001, gamma=0.9, eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr, weight_decay, gamma=float(gamma), eps=float(eps))

    def update_rule(self, w, g, st, lr):
        xp = get_array_module(w)
        gamma = self.hyper["gamma"]
        v = st["v"]
        v *= gamma
        v += (1 - gamma) * g * g
        w -= lr * g / xp.sqrt(v + self.hyper["eps"])

    def kernel(self, lr, t):
        gamma = self.hyper["gamma"]
        return "rmsprop", (lr, gamma, 1 - gamma, self.hyper["eps"])


@register("adadelta")
class Adadelta(Optimizer):
    """Seed 003 eq. 52-56: v <- rho v + (1-rho) g^2; dw = -sqrt(s+eps)/sqrt(v+eps) g;
    s <- rho s + (1-rho) dw^2; w <- w + lr dw (lr = 1 is the published rule)."""
    name = "adadelta"
    slot_names = ("v", "s")

    def __init__(self, model, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0):
        super().__init__(model, lr, weight_decay, rho=float(rho), eps=float(eps))

    def update_rule(self, w, g, st, lr):
        xp = get_array_module(w)
        rho, eps = self.hyper["rho"], self.hyper["eps"]
        v, s = st["v"], st["s"]
        v *= rho
        v += (1 - rho) * g * g
        dw = -xp.sqrt(s + eps) / xp.sqrt(v + eps) * g
        s *= rho
        s += (1 - rho) * dw * dw
        w += lr * dw

    def kernel(self, lr, t):
        rho = self.hyper["rho"]
        return "adadelta", (lr, rho, 1 - rho, self.hyper["eps"])


@register("adam")
class Adam(Optimizer):
    """Seed 003 eq. 46-51: m, v moving averages, bias-corrected; w <- w - lr m^ / sqrt(v^ + eps)."""
    name = "adam"
    slot_names = ("m", "v")
    reads_step_count = True

    def __init__(self, model, lr=0.001, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr, weight_decay, beta1=float(beta1), beta2=float(beta2),
                         eps=float(eps))

    def update_rule(self, w, g, st, lr):
        xp = get_array_module(w)
        b1, b2, t = self.hyper["beta1"], self.hyper["beta2"], st["t"]
        m, v = st["m"], st["v"]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        w -= lr * m_hat / xp.sqrt(v_hat + self.hyper["eps"])

    def kernel(self, lr, t):
        b1, b2 = self.hyper["beta1"], self.hyper["beta2"]
        c1, c2 = (1.0, 1.0) if t is None else (1 - b1 ** t, 1 - b2 ** t)
        return "adam", (lr, b1, 1 - b1, b2, 1 - b2, c1, c2, self.hyper["eps"])

    def device_scalars(self, lr, t):
        return (lr, 1 - self.hyper["beta1"] ** t, 1 - self.hyper["beta2"] ** t)


@register("adamax")
class AdaMax(Optimizer):
    """Seed 004: u <- max(beta2 u, |g|); w <- w - lr/(1 - beta1^t) m / u (eps keeps u > 0)."""
    name = "adamax"
    slot_names = ("m", "u")
    reads_step_count = True

    def __init__(self, model, lr=0.002, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0):
        super().__init__(model, lr, weight_decay, beta1=float(beta1), beta2=float(beta2),
                         eps=float(eps))

    def update_rule(self, w, g, st, lr):
        xp = get_array_module(w)
        b1, b2, t = self.hyper["beta1"], self.hyper["beta2"], st["t"]
        m, u = st["m"], st["u"]
        m *= b1
        m += (1 - b1) * g
        xp.maximum(b2 * u, xp.abs(g), out=u)
        w -= (lr / (1 - b1 ** t)) * m / (u + self.hyper["eps"])

    def kernel(self, lr, t):
        b1, b2 = self.hyper["beta1"], self.hyper["beta2"]
        return "adamax", (b1, 1 - b1, b2, 1.0 if t is None else lr / (1 - b1 ** t),
                          self.hyper["eps"])

    def device_scalars(self, lr, t):
        return (lr / (1 - self.hyper["beta1"] ** t),)
