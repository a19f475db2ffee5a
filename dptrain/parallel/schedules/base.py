"""What a gradient schedule is: when a step's reductions are posted and completed, and when
its updates are applied, as hooks the data parallelism calls at fixed points of a step.

    start_step()             before the forward pass (blocking applies the last update here)
    forward_hooks(comm)      (before_layer, after_layer) for the forward pass, or None each
    grad_ready(i)            layer i's gradients are final (only schedules that overlap)
    empty_backward()         a rank with no samples posts what a backward pass would
    step_end(lr)             backprop is over (a communicating step)
    flush(), discard()       complete everything pending / drop the step's update
    snapshot(), restore(s)   the schedule's pending state (CUDA graph replays)

A schedule is registered by name (``@register``, schedules/__init__.py); the names, their
traits (``overlaps``, ``replicates_fc``, ``with_accumulation``) and ``simulate`` are what the
command line, the configuration, the planner and the benchmarks read. A class that leaves a
hook out fails when it is built (abc), not in the middle of a run.
"""
from __future__ import annotations

import abc

from .. import step_model


class Schedule(abc.ABC):
    name = ""                   # the registered name (--sync)
    help = ""                   # what --help says of it, after its name (may be empty)
    overlaps = False            # reductions run during backprop (a progress engine on P > 1)
    replicates_fc = False       # fully connected layers gather activations (--fc-replicate)
    with_accumulation = True    # combines with --accumulate

    def __init__(self, dp):
        self.dp = dp

    @classmethod
    def resolve(cls, size: int, fc_layers) -> type:
        """The class that runs this schedule on ``size`` ranks with ``fc_layers`` to replicate
        (one rank has nothing to overlap: blocking runs there)."""
        return cls

    @classmethod
    def simulate(cls, times, p: int, net, **kwargs) -> dict:
        """Steady-state step time of this schedule on ``p`` ranks (step_model.simulate)."""
        return step_model.simulate(times, p, net, overlaps=cls.overlaps,
                                   replicates_fc=cls.replicates_fc, **kwargs)

    def start_step(self) -> None:
        """Before a step's forward pass."""

    @abc.abstractmethod
    def forward_hooks(self, communicate: bool) -> tuple:
        """(before_layer(i), after_layer(i)) for this step's forward pass (None: no hook)."""

    @abc.abstractmethod
    def grad_ready(self, i: int) -> None:
        """Layer i's gradients are final in a communicating backward pass."""

    @abc.abstractmethod
    def empty_backward(self) -> None:
        """This rank has no samples: post what a backward pass would, in the same order."""

    @abc.abstractmethod
    def step_end(self, lr: float) -> None:
        """Backprop of a communicating step is over; ``lr``: the step's learning rate."""

    @abc.abstractmethod
    def flush(self) -> None:
        """Complete every pending reduction and update."""

    @abc.abstractmethod
    def discard(self) -> None:
        """Drop the last step's update (its reductions still complete)."""

    @abc.abstractmethod
    def snapshot(self):
        """The pending state, for restore()."""

    @abc.abstractmethod
    def restore(self, state) -> None:
        """Put back a snapshot()."""
