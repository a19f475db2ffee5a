"""What a run's communication cost: the time its reductions took, how much of it the main
thread waited for (exposed) rather than computed through (hidden), and the bytes it sent."""
from __future__ import annotations


class OverlapStats:
    """Where communication time went: hidden behind computation or exposed (waited for)."""

    def __init__(self):
        self.steps = 0
        self.comm_s = 0.0        # sum over buckets of post -> completion
        self.exposed_s = 0.0     # time the main thread spent blocked on communication
        self.bytes = 0           # bytes this rank sends (ring algorithms' count)

    @property
    def hidden_fraction(self) -> float:
        if self.comm_s <= 0:
            return 0.0
        return max(0.0, 1.0 - self.exposed_s / self.comm_s)

    def as_dict(self) -> dict:
        return {"steps": self.steps, "comm_s": self.comm_s, "exposed_s": self.exposed_s,
                "hidden_fraction": self.hidden_fraction,
                "bytes_per_step": self.bytes / max(self.steps, 1)}
