"""This rank's share of a step's inputs: the global batch cut into global micro-batches
(--accumulate), each split over the ranks, augmented and cast to the model's dtype."""
from __future__ import annotations

import numpy as np

from .. import data
from ..data import augment


class StepInputs:
    def __init__(self, ds, augmentations, seed: int, accumulate: int, rank: int, size: int,
                 dtype):
        self.ds, self.augmentations, self.seed = ds, augmentations, seed
        self.accumulate, self.rank, self.size, self.dtype = accumulate, rank, size, dtype

    def micro_batches(self, ids) -> list:
        """Positions in the global batch of each global micro-batch."""
        return [m for m in np.array_split(np.arange(len(ids)), self.accumulate) if len(m)]

    def my_positions(self, micro):
        """Positions (in the global batch) of this rank's slice of a micro-batch."""
        return data.rank_slice(micro, self.rank, self.size)

    def load(self, step: int, ids, weights) -> list:
        """Host arrays, micro-batch after micro-batch: x (augmented, in the model's dtype),
        labels, and the sample weights when the sampler gives them."""
        arrays = []
        for micro in self.micro_batches(ids):
            at = self.my_positions(micro)
            local = ids[at]
            x = augment.apply(self.ds.x_train[local], local, self.augmentations, self.seed, step)
            arrays += [np.asarray(x, dtype=self.dtype), np.asarray(self.ds.y_train[local])]
            if weights is not None:
                arrays.append(np.asarray(weights[at], dtype=self.dtype))
        return arrays
