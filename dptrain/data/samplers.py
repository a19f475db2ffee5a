"""Samplers: which samples form each global batch.

Every sampler answers ``batch(epoch, pos) -> (ids, weights)`` from its state and a
generator keyed by (seed, epoch, pos), so every rank draws the same global batch and a
resumed run draws what the uninterrupted one would. Adaptive samplers learn from
``observe(ids, losses, bounds)`` (the global batch's per-sample losses and gradient
upper bounds, identical on every rank after an allgather), ``refresh(...)`` (the
whole training set, recomputed at the end of an epoch) and, when ``probe_ids()`` asks for
samples besides the batch's, ``observe_probe(...)`` (their numbers).

    uniform  without replacement, reshuffled every epoch (default)
    obs      Online Batch Selection (Loshchilov & Hutter 2015): rank by latest loss,
             p(rank r) proportional to exp(-r ln(s) / N)
    as       Adaptive Sampling (seed 003, Algorithm 1): class bins; P over bins from the
             gradient bound ||softmax - onehot||^2, Q^j inside a bin from losses
             (adaptive_sampling.py, with each reading of the thesis as an option)

``min_prob`` f mixes every distribution with the uniform one, (1 - f) p + f u, so no bin or
sample can reach probability 0 (the thesis saw AS diverge with Adam at batch 64 when bins
did). An epoch is N samples' worth of batches for every sampler.
"""
from __future__ import annotations

import numpy as np

from .adaptive_sampling import ASSampler
from .sampler_base import AdaptiveSampler, batch_rng, with_floor
from .sampling import global_batches, steps_per_epoch

__all__ = ["UniformSampler", "OBSSampler", "ASSampler", "with_floor", "create", "SAMPLERS"]


class UniformSampler:
    """Every sample once per epoch, in an order fixed by (seed, epoch): the global batches
    the ranks split (sampling.py)."""

    name = "uniform"
    adaptive = False

    def __init__(self, n: int, batch_size: int, seed: int = 0, drop_last: bool = False):
        self.n, self.batch_size, self.seed, self.drop_last = n, batch_size, seed, drop_last
        self._cached = (None, None)

    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.n, self.batch_size, self.drop_last)

    def epoch(self, epoch: int):
        return global_batches(self.n, self.batch_size, self.seed, epoch, self.drop_last)

    def batch(self, epoch: int, pos: int):
        if self._cached[0] != epoch:
            self._cached = (epoch, self.epoch(epoch))
        return self._cached[1][pos], None

    def state_dict(self) -> dict:
        return {"name": self.name}

    def load_state_dict(self, d: dict) -> None:
        pass


class OBSSampler(AdaptiveSampler):
    """Online Batch Selection: sample by rank of the latest loss (highest loss = rank 0)."""
    name = "obs"

    def __init__(self, n, batch_size, seed=0, min_prob=0.0, pressure=100.0, recompute_every=2):
        super().__init__(n, batch_size, seed, min_prob)
        if pressure < 1:
            raise ValueError(f"--obs-pressure must be >= 1, got {pressure}")
        self.pressure, self.recompute_every = float(pressure), int(recompute_every)
        self.losses = np.full(n, np.inf)        # unseen samples rank first
        ranks = np.arange(n)
        self.rank_probs = with_floor(np.exp(-ranks * np.log(self.pressure) / n), self.min_prob)

    def probabilities(self) -> np.ndarray:
        """p per sample: the rank probabilities laid out by the current loss order."""
        order = np.argsort(-self.losses, kind="stable")          # descending loss
        p = np.empty(self.n)
        p[order] = self.rank_probs
        return p

    def batch(self, epoch, pos):
        p = self.probabilities()
        ids = batch_rng(self.seed, epoch, pos).choice(self.n, size=self._size(pos), p=p)
        return ids, None

    def observe(self, ids, losses, bounds) -> None:
        self.losses[ids] = losses

    def needs_refresh(self, epoch: int) -> bool:
        return self.recompute_every > 0 and epoch % self.recompute_every == 0

    def refresh(self, losses, bounds) -> None:
        self.losses[:] = losses

    def state_dict(self) -> dict:
        return {"name": self.name, "losses": self.losses.copy()}

    def load_state_dict(self, d: dict) -> None:
        self.losses[:] = d["losses"]


SAMPLERS = ("uniform", "obs", "as")


def create(name: str, n: int, batch_size: int, labels=None, seed: int = 0, **options):
    if name == "uniform":
        return UniformSampler(n, batch_size, seed)
    if name == "obs":
        keys = ("min_prob", "pressure", "recompute_every")
        return OBSSampler(n, batch_size, seed, **{k: v for k, v in options.items() if k in keys})
    if name == "as":
        keys = ("min_prob", "beta", "delta_p", "delta_q", "weighting", "bound", "refresh",
                "refresh_per_bin", "counter")
        return ASSampler(n, batch_size, labels, seed, **{k: v for k, v in options.items() if k in keys})
    raise ValueError(f"unknown sampler {name!r} (choose {', '.join(SAMPLERS)})")
