"""Checking reduced gradients for NaN/inf without a host round trip per bucket.

A reduced gradient is the same on every rank, so every rank reaches the same verdict at the
same step. Its squared norm is computed where the gradient lives; the verdict needs it on
the host. ``synchronous`` (--skip-nonfinite, which must decide before the step's updates)
reads it at once. Otherwise the norm is copied to the host asynchronously (backend.HostCopy)
and read when the trainer ends the next step, so the device never waits for the host.
"""
from __future__ import annotations

import math

from .. import backend


def squared_norm(grads):
    """The squared norm of arrays, computed where they live (None for no arrays)."""
    norm2 = None
    for g in grads:
        flat = g.reshape(-1)
        part = flat @ flat
        norm2 = part if norm2 is None else norm2 + part
    return norm2


class NonfiniteWatch:
    def __init__(self, synchronous: bool):
        self.synchronous = synchronous
        self._pending: list[tuple[int, str, backend.HostCopy]] = []
        self.found: str | None = None          # the first problem seen, with its step

    def record(self, step: int, what: str, grads) -> str | None:
        """Note the squared norm of ``grads`` (arrays of one bucket or layer) of ``step``.
        Returns the problem at once in synchronous mode, else None."""
        norm2 = squared_norm(grads)
        if norm2 is None:
            return None
        if self.synchronous:
            if self.found is None and not math.isfinite(float(norm2)):
                self.found = f"non-finite gradient in {what} at step {step}"
            return self.found
        self.note(step, what, norm2)
        return None

    def note(self, step: int, what: str, norm2) -> None:
        """Queue the host copy of a squared norm computed elsewhere (a CUDA graph's output
        buffer, copied after each replay), read like record()'s."""
        self._pending.append((step, what, backend.HostCopy(norm2)))

    def check(self, before_step: int | None = None) -> str | None:
        """The first non-finite gradient among the records of steps < ``before_step`` (all
        records when None); reading a record waits for its own copy only."""
        keep = []
        for step, what, copy in self._pending:
            if before_step is not None and step >= before_step:
                keep.append((step, what, copy))
            elif self.found is None and not math.isfinite(float(copy.value())):
                self.found = f"non-finite gradient in {what} at step {step}"
        self._pending = keep
        return self.found

    def clear(self) -> None:
        """Forget the verdict (the step was skipped) and what is still pending of it."""
        self.found = None
        self._pending = []
