"""Progress engines: what makes an overlapped bucket's reduction move while backprop runs.

An engine is handed buffers in the order every rank shares and returns handles
(``wait()``, ``test()``, ``done_at``: the perf_counter time it was seen complete). Engines
register by name; --comm-progress, DataParallel's PROGRESS_MODES and the config read the
registry, so adding one is one file (parallel/progress.py holds thread, poll and priority).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence

from ..comm.base import Handle


class ProgressEngine(ABC):
    name = ""
    chunked = False         # sends buckets in chunks, most urgent first (the planner replays it)

    @classmethod
    def over(cls, comm, **options) -> "ProgressEngine":
        """The engine for ``comm`` (a thread-driven one takes its own duplicate); ``options``
        are the engine's own settings from the plan (priority: ``chunk_bytes``)."""
        return cls(comm)

    @abstractmethod
    def submit(self, buf, priority: int = 0) -> Handle:
        """Sum ``buf`` over ranks in place; ``priority``: the lowest layer index it holds."""

    @abstractmethod
    def submit_gather(self, send, recv, priority: int = 0) -> Handle:
        """Allgather ``send`` from every rank into ``recv`` (P, *send.shape) (overlap-fc)."""

    @abstractmethod
    def poll(self) -> None:
        """Called between layers: drive progress where the engine needs driving."""

    @abstractmethod
    def close(self, wait: bool = True) -> None:
        """Complete what is in flight (``wait=False`` after a failure: drop it)."""


_ENGINES: dict[str, type[ProgressEngine]] = {}


def register(name: str):
    """Class decorator: ``@register("poll")``. Abstract classes are refused here."""
    def add(cls):
        if getattr(cls, "__abstractmethods__", None):
            raise TypeError(f"progress engine {name!r} leaves out "
                            f"{', '.join(sorted(cls.__abstractmethods__))}")
        cls.name = name
        _ENGINES[name] = cls
        return cls
    return add


def unregister(name: str) -> None:
    _ENGINES.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_ENGINES)


def chunked(name: str | None) -> bool:
    """The engine ``name`` sends in chunks by priority (None, or unknown: no)."""
    return getattr(_ENGINES.get(name), "chunked", False)


def plan_choices(asked: str, on_device: bool) -> tuple:
    """The engines a plan chooses from: with --comm-progress auto, a FIFO one (poll) or, on
    the CPU, a chunked one (priority: its agreement reads a few values back from every chunk,
    not yet tried on a GPU); else the one asked for."""
    if asked != "auto":
        return (asked,)
    return ("poll",) if on_device else ("poll",) + tuple(n for n in _ENGINES if chunked(n))


def create(name: str, comm, **options) -> ProgressEngine:
    return _ENGINES[name].over(comm, **options)


class LiveNames(Sequence):
    """``head`` then the registered names, read at each use (an engine registered after
    import still counts)."""

    def __init__(self, *head: str):
        self._head = head

    def _all(self) -> tuple[str, ...]:
        return self._head + names()

    def __getitem__(self, i):
        return self._all()[i]

    def __len__(self) -> int:
        return len(self._all())

    def __eq__(self, other) -> bool:
        return tuple(self) == tuple(other)

    def __repr__(self) -> str:
        return repr(self._all())
