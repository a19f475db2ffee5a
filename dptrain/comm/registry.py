"""Transports by name: each transport module declares itself here, and everything that lists
transports (comm.create, comm.wrap, --comm choices and help, choice.PREFERENCES) reads this.

Declaring is import-safe: a ``Transport`` holds factories, so registering a GPU transport
imports nothing heavy (CuPy is reached lazily through backend.cupy_module() when one is built).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .base import Communicator


@dataclass(frozen=True)
class Transport:
    name: str
    devices: tuple[str, ...]                       # which buffers it carries: "cpu", "gpu"
    description: str                               # one line, for docs and --help
    build: Callable[..., Communicator]             # create(name, **kwargs)
    # wrap(name, mpi_comm): the transport over a multi-rank MPI communicator; None when it
    # is not a --comm choice (local is one process; emulated is --net-emulate's)
    over_mpi: Callable[[Communicator], Communicator] | None = None


_TRANSPORTS: dict[str, Transport] = {}


def register(transport: Transport) -> Transport:
    if transport.name in _TRANSPORTS and _TRANSPORTS[transport.name] != transport:
        raise ValueError(f"transport {transport.name!r} is already registered")
    _TRANSPORTS[transport.name] = transport
    return transport


def unregister(name: str) -> None:
    _TRANSPORTS.pop(name, None)


def transports() -> tuple[Transport, ...]:
    return tuple(_TRANSPORTS.values())


def names() -> tuple[str, ...]:
    return tuple(_TRANSPORTS)


def comm_choices() -> tuple[str, ...]:
    """What --comm accepts besides auto: the transports that run over MPI."""
    return tuple(t.name for t in _TRANSPORTS.values() if t.over_mpi is not None)


def get(name: str) -> Transport:
    try:
        return _TRANSPORTS[name]
    except KeyError:
        *most, last = names()
        raise ValueError(f"unknown communicator {name!r} "
                         f"(choose {', '.join(most)} or {last})") from None


def create(name: str = "mpi", **kwargs) -> Communicator:
    return get(name).build(**kwargs)


def wrap(name: str, mpi_comm: Communicator) -> Communicator:
    """A multi-rank MPI communicator carried over the transport ``name`` (from choose)."""
    return get(name).over_mpi(mpi_comm)


def default() -> Communicator:
    """MPI.COMM_WORLD under an MPI launcher, else a one-process communicator."""
    from ..launch_env import launched_under_mpi
    return create("mpi" if launched_under_mpi() else "local")
