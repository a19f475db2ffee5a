"""What adaptive samplers (OBS, AS) learn from, gathered from every rank.

Each step, the per-sample losses and gradient bounds of the rank's slice of every global
micro-batch are gathered into the whole batch's (``observe``); when the sampler then asks
for more samples (``probe_ids``: AS with --as-refresh every-bin), each rank evaluates its
contiguous share of them once the step has been checked and the shares are gathered too
(``probe``); at the end of an epoch, the
whole training set's, from the training-set evaluation (``refresh``). Every rank asks and
gathers the same at the same step, so the collectives match. The numbers are read on the
host every step: the sampler lives there.
"""
from __future__ import annotations

import numpy as np

from .. import backend, data
from ..comm.gather import allgather_concat
from .evaluate import gradient_bound


class SamplerFeed:
    def __init__(self, sampler, comm, guard, evaluate=None):
        """``evaluate(ids)``: this rank's (losses, bounds) of training samples ``ids`` in
        inference mode, with every pending update applied (what probes need)."""
        self.sampler, self.comm, self.guard, self.evaluate = sampler, comm, guard, evaluate

    @staticmethod
    def local_stats(loss, y, n: int):
        """This rank's per-sample losses and bounds of the micro-batch ``loss`` last saw."""
        if n == 0:
            return np.zeros(0), np.zeros(0)
        return backend.to_numpy(loss.sample_losses), backend.to_numpy(gradient_bound(loss.probs, y))

    def _gather(self, what: str, losses, bounds, sizes, phase: str):
        with self.guard(what, phase):
            return (allgather_concat(self.comm, losses, sizes),
                    allgather_concat(self.comm, bounds, sizes))

    def _sizes(self, positions) -> list[int]:
        return [len(data.rank_slice(positions, r, self.comm.size)) for r in range(self.comm.size)]

    def observe(self, step: int, ids, observed) -> None:
        """Give the sampler the whole global batch's per-sample losses and bounds, in the
        batch's order, once per step (beta counts batches, not micro-batches);
        ``observed`` holds (positions of a micro-batch in ``ids``, local_stats) pairs."""
        parts = [(ids[micro], *self._gather(f"allgather of sample losses at step {step}",
                                       losses, bounds, self._sizes(micro), "step"))
                 for micro, (losses, bounds) in observed]
        self.sampler.observe(*(np.concatenate(column) for column in zip(*parts)))

    def probe(self, step: int) -> None:
        """When the sampler asks for more samples (probe_ids), evaluate them: each rank its
        share, then gathered. Called after the step's non-finite check: the evaluation
        applies the pending update, which --skip-nonfinite must be able to drop first."""
        ids = self.sampler.probe_ids()
        if ids is None:
            return
        mine = data.rank_slice(ids, self.comm.rank, self.comm.size)
        losses, bounds = self.evaluate(mine)        # on every rank: it flushes pending updates
        all_losses, all_bounds = self._gather(f"allgather of probed sample losses at step {step}",
                                              losses, bounds, self._sizes(ids), "step")
        self.sampler.observe_probe(ids, all_losses, all_bounds)

    def refresh(self, step: int, epoch: int, losses, bounds, sizes) -> None:
        """The whole training set's numbers (each rank's share), when the sampler wants them."""
        if self.sampler.adaptive and self.sampler.needs_refresh(epoch):
            all_losses, all_bounds = self._gather(f"allgather of training-set losses at step {step}",
                                                  losses, bounds, sizes, "eval")
            self.sampler.refresh(all_losses, all_bounds)
