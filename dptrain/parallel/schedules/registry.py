"""The schedules' registry: name -> Schedule subclass (see schedules/__init__.py)."""
from __future__ import annotations

from collections.abc import Sequence

from .base import Schedule

_REGISTRY: dict = {}


def register(cls):
    """Class decorator: make a Schedule subclass available under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Schedule)) or not cls.name:
        raise TypeError(f"{cls!r} is not a named Schedule subclass")
    abstract = getattr(cls, "__abstractmethods__", ())
    if abstract:
        raise TypeError(f"schedule {cls.name!r} does not define {', '.join(sorted(abstract))}")
    _REGISTRY[cls.name] = cls
    return cls


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def get(name: str) -> type:
    if name not in _REGISTRY:
        raise ValueError(f"unknown schedule {name!r} (choose {', '.join(names())} or auto)")
    return _REGISTRY[name]


def names() -> tuple:
    """The registered schedules, in registration order (blocking, overlap, overlap-fc first)."""
    return tuple(_REGISTRY)


class Names(Sequence):
    """The registered names, read at each use (a schedule registered later still counts)."""

    def __getitem__(self, i):
        return names()[i]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other)

    def __add__(self, other) -> tuple:
        return tuple(self) + tuple(other)

    def __repr__(self) -> str:
        return repr(names())
