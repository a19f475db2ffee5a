"""What every sampler shares: the per-batch generator, the probability floor, the adaptive base."""
from __future__ import annotations

import numpy as np

from .sampling import steps_per_epoch


def batch_rng(seed: int, epoch: int, pos: int) -> np.random.Generator:
    """The generator of one batch's draw: a function of (seed, epoch, position) only, so every
    rank draws the same batch and a resumed run draws what the uninterrupted one would."""
    return np.random.default_rng([seed, epoch, pos, 0xA5])


def with_floor(p: np.ndarray, floor: float) -> np.ndarray:
    """Normalise and mix with the uniform distribution: every entry >= floor / len(p)."""
    p = np.asarray(p, dtype=np.float64)
    total = p.sum()
    p = p / total if total > 0 and np.isfinite(total) else np.full(len(p), 1.0 / len(p))
    return (1.0 - floor) * p + floor / len(p)


class AdaptiveSampler:
    """Base of the samplers that learn from the losses they see (OBS, AS)."""
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
        """Whether the whole training set's losses are wanted at the end of ``epoch``."""
        return False

    def probe_ids(self):
        """Samples whose losses and bounds the sampler wants now, besides the batch's (every
        rank asks the same at the same step); None when it wants none."""
        return None
