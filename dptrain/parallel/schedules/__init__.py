"""The gradient schedules, registered by name (--sync): one class per schedule.

    blocking     backprop, then Allreduce every bucket, then update (Algorithm 2)
    overlap      each bucket's Allreduce overlaps the rest of backprop and the next forward
    overlap-fc   overlap, fully connected layers all-gathering instead (Algorithm 3)

``register`` adds a Schedule subclass under its ``name``; ``get(name)`` and ``names()`` are
what --sync's choices, the configuration's check, the planner's candidates and the bench
rows read. A new schedule is one module with one ``@register``ed class.
"""
from __future__ import annotations

from .base import Schedule
from .registry import Names, get, names, register, unregister

from . import blocking, overlap, overlap_fc  # noqa: E402,F401,I001  (the built-ins register)

__all__ = ["Names", "Schedule", "get", "names", "register", "unregister"]
