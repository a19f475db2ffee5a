"""Every case of the battery, by kind."""
from __future__ import annotations

from . import cases_agree, cases_crafted, cases_edges, cases_hang, cases_output
from .case import Case


def all_cases() -> list[Case]:
    out = (cases_agree.cases() + cases_hang.cases() + cases_output.cases()
           + cases_crafted.cases() + cases_edges.cases())
    names = [c.name for c in out]
    assert len(names) == len(set(names)), "case names must be unique"
    return out
