"""Device-like timing on the CPU: host copies whose readiness is decided per rank.

On a GPU, ``backend.HostCopy(...).ready`` is a CUDA event query: true on one rank and false
on another at the same step. ``RankTimedCopy`` reproduces that with NumPy: each copy's
readiness is drawn from a generator seeded by the rank (so ranks disagree, reproducibly),
and some reads are late (a short sleep before the value is handed over), which shifts the
ranks' relative timing the way a busy device does. ``install`` also makes the ranks report
device-style reads, so the trainer runs the device pipeline (results read two steps late).
"""
from __future__ import annotations

import time

import numpy as np

from dptrain import backend


def install(monkeypatch, rank: int, seed: int = 0) -> None:
    rng = np.random.default_rng([seed, rank])
    p_ready = 0.05 + 0.9 * (rank % 2)                # ranks differ: 0.05 on even, 0.95 on odd

    class RankTimedCopy(backend.HostCopy):
        def __init__(self, a):
            super().__init__(a)
            self._ready = bool(rng.random() < p_ready)
            self._late = float(rng.random() < 0.1) * 0.002

        @property
        def ready(self) -> bool:
            return self._ready

        def value(self):
            if self._late:
                time.sleep(self._late)
                self._late = 0.0
            return super().value()

    monkeypatch.setattr(backend, "HostCopy", RankTimedCopy)
    monkeypatch.setattr(backend, "host_reads_are_free", lambda: False)
