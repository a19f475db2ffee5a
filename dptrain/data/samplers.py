"""Samplers: which samples form each global batch.

Every sampler answers ``batch(epoch, pos) -> (ids, weights)`` from its state and a
generator keyed by (seed, epoch, pos), so every rank draws the same global batch and a
resumed run draws what the uninterrupted one would. Adaptive samplers learn from
``observe(ids, losses, bounds)`` (the global batch's per-sample losses and gradient
upper bounds, identical on every rank after an allgather) and ``refresh(...)`` (the
whole training set, recomputed at the end of an epoch).

    uniform  without replacement, reshuffled every epoch (default)
    obs      Online Batch Selection (Loshchilov & Hutter 2015): rank by latest loss,
             p(rank r) proportional to exp(-r ln(s) / N)
    as       Adaptive Sampling (seed 003, Algorithm 1): class bins; P over bins from the
             accumulated gradient bound ||softmax - onehot||^2, Q^j inside a bin from losses

``min_prob`` f mixes every distribution with the uniform one, (1 - f) p + f u, so no bin or
sample can reach probability 0 (the thesis saw AS diverge with Adam at batch 64 when bins
did). An epoch is N samples' worth of batches for every sampler.
"""
from __future__ import annotations

import numpy as np

from .sampling import global_batches, steps_per_epoch


def _rng(seed: int, epoch: int, pos: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch, pos, 0xA5])


def with_floor(p: np.ndarray, floor: float) -> np.ndarray:
    """Normalise and mix with the uniform distribution: every entry >= floor / len(p)."""
    p = np.asarray(p, dtype=np.float64)
    total = p.sum()
    p = p / total if total > 0 and np.isfinite(total) else np.full(len(p), 1.0 / len(p))
    return (1.0 - floor) * p + floor / len(p)


class UniformSampler:
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


class _Adaptive:
    adaptive = True

    def __init__(self, n, batch_size, seed=0, min_prob=0.0):
        if not 0.0 <= min_prob < 1.0:
            raise ValueError(f"--sampler-min-prob must be in [0, 1), got {min_prob}")
        self.n, self.batch_size, self.seed, self.min_prob = n, batch_size, seed, float(min_prob)

    def steps_per_epoch(self) -> int:
        return steps_per_epoch(self.n, self.batch_size)

    def _size(self, pos: int) -> int:
        """The last batch of an epoch is partial, as with uniform sampling."""
        return min(self.batch_size, self.n - pos * self.batch_size)

    def needs_refresh(self, epoch: int) -> bool:
        return False


class OBSSampler(_Adaptive):
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
        ids = _rng(self.seed, epoch, pos).choice(self.n, size=self._size(pos), p=p)
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


class ASSampler(_Adaptive):
    """Adaptive Sampling, seed 003 Algorithm 1.

    Bins are the classes. P starts uniform and, every ``beta`` iterations (mini-batches),
    becomes sqrt(gc[j]) normalised (eq. 67; gc accumulates the gradient bound of line 11 over
    those iterations), smoothed p <- delta_p p_old + (1 - delta_p) p_new. (The listing puts
    its counter inside the per-sample loop; re-estimating every 10 *samples* leaves most of
    10 bins without data each time and P collapsed onto a few classes within an epoch: 0.51
    test accuracy after 2 epochs of thesis-cnn on mnist5k, against 0.97 uniform.) After each batch, Q^j is proportional to the latest losses (eq. 79;
    samples never seen, loss infinite, share the bin's mass until they are), smoothed with
    delta_q. With ``weighting="importance"`` each sample carries 1 / (N p_j q_i), which keeps
    the gradient unbiased; ``"none"`` is the thesis as published.
    """
    name = "as"

    def __init__(self, n, batch_size, labels, seed=0, min_prob=0.0, beta=10, delta_p=0.9,
                 delta_q=0.1, weighting="importance"):
        super().__init__(n, batch_size, seed, min_prob)
        if weighting not in ("importance", "none"):
            raise ValueError(f"--as-weighting: unknown value {weighting!r} (choose importance or none)")
        if beta < 1 or not (0 <= delta_p <= 1 and 0 <= delta_q <= 1):
            raise ValueError("--as-beta must be >= 1 and --as-delta-p/-q in [0, 1]")
        self.beta, self.delta_p, self.delta_q = int(beta), float(delta_p), float(delta_q)
        self.weighting = weighting
        labels = np.asarray(labels)
        self.bins = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        self.bin_of = np.empty(n, dtype=np.int64)
        self.pos_in_bin = np.empty(n, dtype=np.int64)
        for j, members in enumerate(self.bins):
            self.bin_of[members] = j
            self.pos_in_bin[members] = np.arange(len(members))
        k = len(self.bins)
        self.P = np.full(k, 1.0 / k)
        self.Q = [np.full(len(m), 1.0 / len(m)) for m in self.bins]
        self.losses = np.full(n, np.inf)
        self.gc = np.zeros(k)
        self.t = 0

    def sampling_probs(self):
        """(P, [Q^j]) as used for drawing, floors applied."""
        return (with_floor(self.P, self.min_prob), [with_floor(q, self.min_prob) for q in self.Q])

    def batch(self, epoch, pos):
        rng = _rng(self.seed, epoch, pos)
        P, Q = self.sampling_probs()
        size = self._size(pos)
        bins = rng.choice(len(P), size=size, p=P)
        ids = np.empty(size, dtype=np.int64)
        prob = np.empty(size)
        for j in np.unique(bins):                   # a loop over the k bins, not the samples
            where = np.flatnonzero(bins == j)
            inside = rng.choice(len(Q[j]), size=len(where), p=Q[j])
            ids[where] = self.bins[j][inside]
            prob[where] = P[j] * Q[j][inside]
        weights = 1.0 / (self.n * prob) if self.weighting == "importance" else None
        return ids, weights

    def observe(self, ids, losses, bounds) -> None:
        ids = np.asarray(ids)
        self.losses[ids] = losses
        # lines 10-16: accumulate bounds per bin; every beta samples re-estimate and smooth P
        bins = self.bin_of[ids]
        bounds = np.asarray(bounds, dtype=np.float64)
        self.gc += np.bincount(bins, weights=bounds, minlength=len(self.P))
        self.t += 1
        if self.t % self.beta == 0:
            new = np.sqrt(self.gc)
            if new.sum() > 0:
                self.P = self.delta_p * self.P + (1 - self.delta_p) * new / new.sum()
            self.gc[:] = 0
        # lines 21-22: Q^j from the latest losses, smoothed
        for j in np.unique(bins):
            self.Q[j] = self.delta_q * self.Q[j] + (1 - self.delta_q) * self._loss_dist(j)

    def _loss_dist(self, j) -> np.ndarray:
        loss = self.losses[self.bins[j]]
        unseen = ~np.isfinite(loss)
        if unseen.any():
            return unseen / unseen.sum()
        total = loss.sum()
        return loss / total if total > 0 else np.full(len(loss), 1.0 / len(loss))

    def state_dict(self) -> dict:
        return {"name": self.name, "P": self.P.copy(), "Q": np.concatenate(self.Q),
                "losses": self.losses.copy(), "gc": self.gc.copy(), "t": self.t}

    def load_state_dict(self, d: dict) -> None:
        self.P = np.array(d["P"], dtype=np.float64)
        flat = np.asarray(d["Q"], dtype=np.float64)
        sizes = np.cumsum([len(m) for m in self.bins])[:-1]
        self.Q = [q.copy() for q in np.split(flat, sizes)]
        self.losses[:] = d["losses"]
        self.gc[:] = d["gc"]
        self.t = int(d["t"])


SAMPLERS = ("uniform", "obs", "as")


def create(name: str, n: int, batch_size: int, labels=None, seed: int = 0, **options):
    if name == "uniform":
        return UniformSampler(n, batch_size, seed)
    if name == "obs":
        keys = ("min_prob", "pressure", "recompute_every")
        return OBSSampler(n, batch_size, seed, **{k: v for k, v in options.items() if k in keys})
    if name == "as":
        keys = ("min_prob", "beta", "delta_p", "delta_q", "weighting")
        return ASSampler(n, batch_size, labels, seed, **{k: v for k, v in options.items() if k in keys})
    raise ValueError(f"unknown sampler {name!r} (choose {', '.join(SAMPLERS)})")
