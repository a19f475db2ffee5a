"""Adaptive Sampling (seed 003, section 4.2, Algorithm 1), with each reading of the thesis.

Bins are the classes. A sample is drawn by drawing a bin j from P, then a sample i of it from
Q^j. Q^j is proportional to the samples' latest losses (eq. 79; samples never seen, loss
infinite, share the bin's mass until they are), recomputed after each batch and smoothed
with delta_q. P starts uniform and is re-estimated every ``beta`` counts, smoothed
p <- delta_p p_old + (1 - delta_p) p_new. The thesis can be read several ways; each is an
option (docs/sampling.md compares them):

``bound`` -- what p_new is proportional to:
    listing  sqrt(gc_j), gc_j the sum of the raw gradient bounds ||softmax - onehot||^2 of the
             bin's samples seen since the last re-estimate (Algorithm 1, lines 11-13). The
             bin's share of the draws enters gc too, so P settles where p_j is proportional
             to the bin's mean bound.
    eq67     sqrt(sum over the *whole* bin of G_i / q_i) (eq. 67, and the Annex D paper's
             division by q_i): the latest bound known for each sample (a bin's unseen samples
             count at the mean of its seen ones), q_i as drawn. With fixed bounds and uniform
             Q^j, P settles at |bin| sqrt(mean bound) (the square root of the mean bound for
             bins of equal size), as the variance-optimal distribution should.
``refresh`` -- where the bounds come from:
    drawn      the samples of the training batches only: a bin drawn rarely is seen rarely.
    every-bin  also ``refresh_per_bin`` samples of every bin (uniformly, without
               replacement), evaluated before each re-estimate of P, as the thesis says
               Gopal's method does (its section 4.2, problem 1): ``probe_ids``/``observe_probe``.
``counter`` -- what beta counts:
    batches  mini-batches, as the text says ("every beta iterations").
    samples  samples: the listing read literally, its counter inside the per-sample loop.
             Each re-estimate then sees ~beta samples, most bins none, and P collapses
             onto a few classes (docs/sampling.md measures it).

With ``weighting="importance"`` each sample carries 1 / (N p_j q_i) (eq. 64-65: the
published objective), which keeps the gradient unbiased; ``"none"`` drops the weights.
"""
from __future__ import annotations

import numpy as np

from .sampler_base import AdaptiveSampler, batch_rng, with_floor

BOUNDS = ("listing", "eq67")
REFRESHES = ("drawn", "every-bin")
COUNTERS = ("batches", "samples")
WEIGHTINGS = ("importance", "none")


def _choice(flag: str, value, allowed) -> str:
    if value not in allowed:
        raise ValueError(f"{flag}: unknown value {value!r} (choose {' or '.join(allowed)})")
    return value


class ASSampler(AdaptiveSampler):
    name = "as"

    def __init__(self, n, batch_size, labels, seed=0, min_prob=0.0, beta=10, delta_p=0.9,
                 delta_q=0.1, weighting="importance", bound="listing", refresh="drawn",
                 refresh_per_bin=0, counter="batches"):
        super().__init__(n, batch_size, seed, min_prob)
        self.weighting = _choice("--as-weighting", weighting, WEIGHTINGS)
        self.bound_rule = _choice("--as-bound", bound, BOUNDS)
        self.refresh_rule = _choice("--as-refresh", refresh, REFRESHES)
        self.counter = _choice("--as-counter", counter, COUNTERS)
        if beta < 1 or not (0 <= delta_p <= 1 and 0 <= delta_q <= 1):
            raise ValueError("--as-beta must be >= 1 and --as-delta-p/-q in [0, 1]")
        if refresh_per_bin < 0:
            raise ValueError(f"--as-refresh-per-bin must be >= 0, got {refresh_per_bin}")
        if refresh == "every-bin" and counter == "samples":
            raise ValueError("--as-refresh every-bin needs --as-counter batches (a refresh "
                             "every beta samples would evaluate more samples than it trains on)")
        self.beta, self.delta_p, self.delta_q = int(beta), float(delta_p), float(delta_q)
        labels = np.asarray(labels)
        self.bins = [np.flatnonzero(labels == c) for c in np.unique(labels)]
        self.bin_of = np.empty(n, dtype=np.int64)
        for j, members in enumerate(self.bins):
            self.bin_of[members] = j
        k = len(self.bins)
        # 0: a batch's worth of samples spread over the bins ("depends on the mini-batch size")
        self.per_bin = int(refresh_per_bin) or max(1, batch_size // k)
        self.P = np.full(k, 1.0 / k)
        self.Q = [np.full(len(m), 1.0 / len(m)) for m in self.bins]
        self.losses = np.full(n, np.inf)
        self.bounds = np.full(n, np.nan)          # latest gradient bound of each sample
        self.gc = np.zeros(k)
        self.t = 0
        self.pending = False                      # a re-estimate waits for the probe's numbers

    # --- drawing ---------------------------------------------------------
    def sampling_probs(self):
        """(P, [Q^j]) as used for drawing, floors applied."""
        return (with_floor(self.P, self.min_prob), [with_floor(q, self.min_prob) for q in self.Q])

    def batch(self, epoch, pos):
        rng = batch_rng(self.seed, epoch, pos)
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

    # --- learning --------------------------------------------------------
    def observe(self, ids, losses, bounds) -> None:
        """The global batch's per-sample losses and bounds, in the batch's order."""
        ids = np.asarray(ids)
        losses = np.asarray(losses, dtype=np.float64)
        bounds = np.asarray(bounds, dtype=np.float64)
        if self.counter == "batches":
            # lines 10-16, the counter advanced once per mini-batch
            self._take(ids, losses, bounds)
            self.t += 1
            if self.t % self.beta == 0:
                if self.refresh_rule == "every-bin":
                    self.pending = True           # the trainer evaluates probe_ids() first
                else:
                    self._reestimate()
        else:
            # the listing read literally: P re-estimated after every beta-th *sample*
            start = 0
            for end in range(self.beta - self.t % self.beta, len(ids) + 1, self.beta):
                self._take(ids[start:end], losses[start:end], bounds[start:end])
                self.t += end - start
                self._reestimate()
                start = end
            self._take(ids[start:], losses[start:], bounds[start:])
            self.t += len(ids) - start
        # lines 21-22: Q^j from the latest losses, smoothed
        for j in np.unique(self.bin_of[ids]):
            self.Q[j] = self.delta_q * self.Q[j] + (1 - self.delta_q) * self._loss_dist(j)

    def probe_ids(self):
        """With --as-refresh every-bin, when a re-estimate is due: ``per_bin`` samples of
        every bin, uniformly without replacement, the same on every rank."""
        if not self.pending:
            return None
        rng = np.random.default_rng([self.seed, self.t, 0x5A])
        return np.concatenate([rng.choice(m, size=min(self.per_bin, len(m)), replace=False)
                               for m in self.bins])

    def observe_probe(self, ids, losses, bounds) -> None:
        """The probed samples' losses and bounds (inference mode): fold them in, re-estimate P."""
        self._take(np.asarray(ids), np.asarray(losses, dtype=np.float64),
                   np.asarray(bounds, dtype=np.float64))
        self._reestimate()
        self.pending = False

    def _take(self, ids, losses, bounds) -> None:
        self.losses[ids] = losses
        self.bounds[ids] = bounds
        self.gc += np.bincount(self.bin_of[ids], weights=bounds, minlength=len(self.P))

    def _reestimate(self) -> None:
        """Lines 13-15: p_new from the bounds, smoothed into P; the accumulators restart."""
        new = np.sqrt(self.gc if self.bound_rule == "listing" else self.bin_sums())
        total = new.sum()
        if total > 0 and np.isfinite(total):
            self.P = self.delta_p * self.P + (1 - self.delta_p) * new / total
        self.gc[:] = 0

    def bin_sums(self) -> np.ndarray:
        """Eq. 67 under the root: sum over each whole bin of G_i / q_i, from the latest bound
        known for each sample; unseen samples count at their bin's mean (or, in a bin with
        none seen, at the mean over every bin), so a bin is not starved for being unseen."""
        k = len(self.P)
        known = np.isfinite(self.bounds)
        if not known.any():
            return np.zeros(k)
        seen = np.bincount(self.bin_of[known], minlength=k)
        total = np.bincount(self.bin_of[known], weights=self.bounds[known], minlength=k)
        mean = np.where(seen > 0, total / np.maximum(seen, 1), self.bounds[known].mean())
        filled = np.where(known, self.bounds, mean[self.bin_of])
        q = np.empty(self.n)
        for j, members in enumerate(self.bins):
            q[members] = with_floor(self.Q[j], self.min_prob)
        return np.bincount(self.bin_of, weights=filled / q, minlength=k)

    def _loss_dist(self, j) -> np.ndarray:
        loss = self.losses[self.bins[j]]
        unseen = ~np.isfinite(loss)
        if unseen.any():
            return unseen / unseen.sum()
        total = loss.sum()
        return loss / total if total > 0 else np.full(len(loss), 1.0 / len(loss))

    # --- checkpoints -----------------------------------------------------
    def state_dict(self) -> dict:
        return {"name": self.name, "P": self.P.copy(), "Q": np.concatenate(self.Q),
                "losses": self.losses.copy(), "bounds": self.bounds.copy(), "gc": self.gc.copy(),
                "t": self.t, "pending": self.pending}

    def load_state_dict(self, d: dict) -> None:
        self.P = np.array(d["P"], dtype=np.float64)
        flat = np.asarray(d["Q"], dtype=np.float64)
        sizes = np.cumsum([len(m) for m in self.bins])[:-1]
        self.Q = [q.copy() for q in np.split(flat, sizes)]
        self.losses[:] = d["losses"]
        self.bounds[:] = d.get("bounds", np.nan)     # checkpoints older than the eq67 reading
        self.gc[:] = d["gc"]
        self.t = int(d["t"])
        self.pending = bool(d.get("pending", False))
