"""What adaptive samplers (OBS, AS) learn from, gathered from every rank.

Each step, the per-sample losses and gradient bounds of the rank's slice of every global
micro-batch are gathered into the whole batch's (``observe``); at the end of an epoch, the
whole training set's, from the training-set evaluation (``refresh``). Both are read on the
host every step: the sampler lives there.
"""
from __future__ import annotations

import numpy as np

from .. import backend, data
from ..comm.gather import allgather_concat
from .evaluate import gradient_bound


class SamplerFeed:
    def __init__(self, sampler, comm, guard):
        self.sampler, self.comm, self.guard = sampler, comm, guard

    @staticmethod
    def local_stats(loss, y, n: int):
        """This rank's per-sample losses and bounds of the micro-batch ``loss`` last saw."""
        if n == 0:
            return np.zeros(0), np.zeros(0)
        return backend.to_numpy(loss.sample_losses), backend.to_numpy(gradient_bound(loss.probs, y))

    def _gather(self, what: str, losses, bounds, sizes):
        with self.guard(what):
            return (allgather_concat(self.comm, losses, sizes),
                    allgather_concat(self.comm, bounds, sizes))

    def observe(self, step: int, ids, observed) -> None:
        """Give the sampler the whole global batch's per-sample losses and bounds;
        ``observed`` holds (positions of a micro-batch in ``ids``, local_stats) pairs."""
        for micro, (losses, bounds) in observed:
            sizes = [len(data.rank_slice(micro, r, self.comm.size)) for r in range(self.comm.size)]
            all_losses, all_bounds = self._gather(f"allgather of sample losses at step {step}",
                                                  losses, bounds, sizes)
            self.sampler.observe(ids[micro], all_losses, all_bounds)

    def refresh(self, step: int, epoch: int, losses, bounds, sizes) -> None:
        """The whole training set's numbers (each rank's share), when the sampler wants them."""
        if self.sampler.adaptive and self.sampler.needs_refresh(epoch):
            all_losses, all_bounds = self._gather(f"allgather of training-set losses at step {step}",
                                                  losses, bounds, sizes)
            self.sampler.refresh(all_losses, all_bounds)
