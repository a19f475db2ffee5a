"""Which gradient buckets are summed hierarchically (comm/hierarchical.py), from measurements.

At start-up the probe (comm/link_probe.py) times flat Allreduces and, where ranks share nodes,
the hierarchical ones at the same sizes; each gives a line t = a + b n, fitted on rank 0 and
broadcast, so every rank decides alike. A bucket goes hierarchical where its line is lower
(MPICH's own Allreduce may already be node-aware at some sizes: measured, not assumed). The
planner prices buckets with ``PlannedLink``, the cost of the reduction each size will get.
"""
from __future__ import annotations

from .emulated import AlphaBeta


class ReductionChoice:
    """Which buckets go hierarchical: ``mode`` flat | hierarchical | auto (the measured lines)."""

    def __init__(self, mode: str = "auto", size: int = 1):
        self.mode, self.size = mode, size
        self.flat: AlphaBeta | None = None
        self.hier: AlphaBeta | None = None
        self.intra = self.inter = None     # the node's and the cross link (reported only)

    def hierarchical(self, nbytes: int) -> bool:
        if self.mode != "auto":
            return self.mode == "hierarchical"
        if self.flat is None or self.hier is None:
            return False                       # nothing measured yet: MPI's own collective
        return self.hier.allreduce(self.size, nbytes) < self.flat.allreduce(self.size, nbytes)

    def describe(self) -> str:
        """For the run's first line: which bucket sizes go hierarchical."""
        if self.mode != "auto":
            return f"{self.mode} (as asked)"
        if self.flat is None or self.hier is None:
            return "flat (not measured)"
        p = self.size
        a_f, a_t = self.flat.allreduce(p, 0), self.hier.allreduce(p, 0)
        b_f, b_t = self.flat.allreduce(p, 1) - a_f, self.hier.allreduce(p, 1) - a_t
        if b_t < b_f:
            edge = max(0.0, (a_t - a_f) / (b_f - b_t))
            return "hierarchical for every bucket" if edge == 0 else \
                f"hierarchical for buckets from {_size(edge)}, flat below"
        if a_t < a_f:
            return f"hierarchical for buckets below {_size((a_f - a_t) / (b_t - b_f))}, flat above"
        return "flat (measured faster at every size)"


def _size(nbytes: float) -> str:
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.3g} {unit}"
    return f"{nbytes:.0f} B"


class PlannedLink(AlphaBeta):
    """The link the planner prices buckets with: each Allreduce at the cost of the reduction
    the choice gives its size (gathers and the rest stay on the flat link)."""

    def __init__(self, flat: AlphaBeta, choice: ReductionChoice):
        super().__init__(flat.alpha, 8.0 / flat.beta)
        self.flat, self.choice = flat, choice

    def allreduce(self, p: int, nbytes: int) -> float:
        if self.choice.hierarchical(int(nbytes)) and self.choice.hier is not None:
            return self.choice.hier.allreduce(p, nbytes)
        return self.flat.allreduce(p, nbytes)
