"""The optimisers by name: each declares itself here, once, and everything that lists them
reads this table -- ``optim.names()`` and ``optim.get()``, the choices and the help of
``dptrain train --optimizer``, and so the configuration check (an unknown name is exit 2).

    @register("sign-sgd", help="w <- w - lr sign(g)")
    class SignSGD(Optimizer): ...

is all a new optimiser needs (its update rule; a fused CUDA kernel is optional, see
base.Optimizer.kernel). A name may also stand for a factory, as "momentum" stands for SGD
with momentum 0.9.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Entry:
    name: str
    factory: Callable        # factory(model, **hyper) -> Optimizer
    help: str                # one line: what the rule does


_ENTRIES: dict[str, Entry] = {}      # in registration order: the order --help lists them in


def register(name: str, factory: Callable | None = None, help: str = ""):
    """Make ``name`` build ``factory(model, **hyper)``. Without ``factory``, a decorator for
    the optimiser class itself. A name taken by another factory is a ValueError."""
    def add(made: Callable) -> Callable:
        held = _ENTRIES.get(name)
        if held is not None and held.factory is not made:
            raise ValueError(f"optimizer {name!r} is registered already")
        _ENTRIES[name] = Entry(name, made, help or (made.__doc__ or "").strip().split("\n")[0])
        return made
    return add if factory is None else add(factory)


def unregister(name: str) -> None:
    """Take ``name`` out of the table (a test's own optimiser, once the test ends)."""
    del _ENTRIES[name]


def entries() -> list[Entry]:
    """Every registered optimiser, in registration order."""
    return list(_ENTRIES.values())


def names() -> list[str]:
    """The optimisers ``get`` builds by name, sorted."""
    return sorted(_ENTRIES)


def choices_text() -> str:
    """The names as ``--optimizer``'s help lists them: in registration order."""
    return ", ".join(_ENTRIES)


def get(name: str, model, **kwargs):
    """``get("adadelta", model, lr=1.0, rho=0.9)``; omitted (None) hyper-parameters take the
    optimiser's defaults. An unknown name is a ValueError naming the choices."""
    if name not in _ENTRIES:
        from ..suggest import did_you_mean
        raise ValueError(f"unknown optimizer {name!r}{did_you_mean(name, names())} "
                         f"(choose {', '.join(names())})")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return _ENTRIES[name].factory(model, **kwargs)
