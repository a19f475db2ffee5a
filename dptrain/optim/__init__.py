"""Optimisers (update rules over a model's params and grads) and learning-rate schedules.

``get(name, model, **hyper)`` builds an optimiser by name (``names()`` lists them); each
declares itself in registry.py's table (``register``), which the CLI's --optimizer reads too.
``Schedule(lr, kind, total_steps, ...)`` gives the learning rate of each step, for the kinds
in ``SCHEDULES`` (constant, step, cosine; a linear warm-up optional)."""
from .base import Optimizer
from .registry import get, names, register, unregister
from .rules import SGD, AdaGrad, Adadelta, Adam, AdaMax, RMSProp
from .schedules import SCHEDULES, Schedule

__all__ = ["Optimizer", "SGD", "AdaGrad", "RMSProp", "Adadelta", "Adam", "AdaMax", "Schedule",
           "SCHEDULES", "get", "names", "register", "unregister"]
