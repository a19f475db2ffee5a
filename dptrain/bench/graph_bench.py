"""``dptrain bench --batch-sizes ... --cuda-graph off,on``: the benchmark's step replayed from a
CUDA graph (train/graph_step.py), to time it against eager steps and PyTorch in one run.

The graph path needs what the trainer gives a step: DataParallel's flat gradient buckets
(one process: its reductions do nothing), a batch context (dropout keys from the step), a
learning rate. The first two steps are the warm-up and the capture, so ``--warmup 2`` or
more keeps both out of the timed steps.
"""
from __future__ import annotations

import numpy as np

from .. import nn


class GraphedSteps:
    """step(x, y, i) runs training step i through a GraphStep over one process."""

    def __init__(self, model, opt, loss, batch: int, capture=None):
        from ..comm.local import LocalCommunicator
        from ..parallel import DataParallel
        from ..train import graph_capture, graph_step
        comm = LocalCommunicator()
        self.dp = DataParallel(model, comm, schedule="blocking")
        self.opt, self.loss, self.batch = opt, loss, batch
        capture = capture if capture is not None else graph_capture.default()
        self.graph = graph_step.GraphStep(self.dp, loss, opt, comm, capture, batch, seed=0,
                                          reason=None if capture is not None else
                                          "no GPU: CUDA graphs need CuPy on a GPU")
        self.ids = np.arange(batch)

    def step(self, x, y, i: int) -> None:
        self.graph.train_step(x, y, self.loss, self.opt, lr=self.opt.lr, global_batch=self.batch,
                              context=nn.BatchContext(self.ids, i, 0))

    def describe(self) -> str:
        """'replayed' once a capture succeeded, else why the steps ran eagerly."""
        return "replayed" if self.graph.graph is not None else f"eager: {self.graph.disabled}"
