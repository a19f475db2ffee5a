"""Optimisers (update rules over a model's params and grads) and learning-rate schedules.

``get(name, model, **hyper)`` builds an optimiser by name (``names()`` lists them);
``Schedule(lr, kind, total_steps, ...)`` gives the learning rate of each step, for the kinds
in ``SCHEDULES`` (constant, step, cosine; a linear warm-up optional)."""
from .base import Optimizer
from .rules import SGD, AdaGrad, Adadelta, Adam, AdaMax, RMSProp
from .schedules import SCHEDULES, Schedule

OPTIMIZERS = {
    "sgd": SGD, "momentum": lambda model, **kw: SGD(model, momentum=kw.pop("momentum", 0.9), **kw),
    "nesterov": lambda model, **kw: SGD(model, momentum=kw.pop("momentum", 0.9), nesterov=True, **kw),
    "adagrad": AdaGrad, "rmsprop": RMSProp, "adadelta": Adadelta, "adam": Adam, "adamax": AdaMax,
}


def names() -> list[str]:
    """The optimisers ``get`` builds by name, sorted."""
    return sorted(OPTIMIZERS)


def get(name: str, model, **kwargs) -> Optimizer:
    """``optim.get("adadelta", model, lr=1.0, rho=0.9)``; omitted hyper-parameters take defaults."""
    if name not in OPTIMIZERS:
        from ..suggest import did_you_mean
        raise ValueError(f"unknown optimizer {name!r}{did_you_mean(name, names())} "
                         f"(choose {', '.join(names())})")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return OPTIMIZERS[name](model, **kwargs)


__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSProp", "Adadelta", "Adam", "AdaMax", "Schedule",
           "SCHEDULES", "get", "names"]
