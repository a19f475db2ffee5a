"""The Layer contract every layer follows.

    y = layer.forward(x, train)      # caches what backward needs
    dx = layer.backward(dy)          # fills layer.grads in place, returns dL/dx
    layer.params / layer.grads       # same keys, same shapes
    layer.buffers                    # non-trainable state saved with the model (BN stats)

Gradients are written *into* the arrays of ``grads`` (never rebound), so the
data-parallel code can replace them with views into flat communication buckets.
Layers own no optimiser: updates happen outside, after gradients are averaged.
Neither ``forward`` may write into its ``x`` nor ``backward`` into its ``dy``: a residual
block (containers.py) hands the same array to its branch and its shortcut.
"""
from __future__ import annotations

from ..backend import Backend, current


class BatchContext:
    """Which global samples the current batch holds, and at which step.

    Per-sample randomness (dropout masks) is keyed by these global indices, so
    that any rank count draws the same masks for the same sample.
    """

    def __init__(self, sample_ids, step: int, seed: int = 0):
        self.sample_ids = sample_ids
        self.step = int(step)
        self.seed = int(seed)


class Layer:
    """The base of every layer: the contract in this module's docstring (forward, backward,
    params, grads, buffers), shape and FLOP bookkeeping for summaries."""
    needs_input_grad = True   # the first layer of a model skips computing dx
    regularizer = None
    # The model's backend (set by Sequential before ``initialize``); None: the process default
    backend: Backend | None = None

    def __init__(self):
        self.params: dict = {}
        self.grads: dict = {}
        self.buffers: dict = {}
        self.context: BatchContext | None = None
        self.index = -1           # position in its model, set by Sequential

    # --- shape bookkeeping, used by Sequential and summary() -------------
    def output_shape(self, in_shape: tuple) -> tuple:
        return in_shape

    def flops(self, in_shape: tuple) -> int:
        """Forward floating-point operations per sample (multiply-add = 2)."""
        return 0

    def initialize(self, rng) -> None:
        """Draw initial parameters from a numpy Generator (same on every rank)."""

    # --- computation -----------------------------------------------------
    def forward(self, x, train: bool):
        raise NotImplementedError

    def backward(self, dy):
        raise NotImplementedError

    # --- helpers ---------------------------------------------------------
    def compute_backend(self) -> Backend:
        """The backend this layer's arrays and kernels follow: its model's, else the default."""
        return self.backend if self.backend is not None else current()

    def _add_param(self, name: str, value) -> None:
        b = self.compute_backend()
        self.params[name] = b.asarray(value)
        self.grads[name] = b.xp.zeros_like(self.params[name])

    def regularization_loss(self):
        """The penalty as a 0-d array on the layer's device (0.0 without a regularizer)."""
        if self.regularizer is None or "W" not in self.params:
            return 0.0
        return self.regularizer.loss(self.params["W"])

    def _add_regularization_grad(self) -> None:
        if self.regularizer is not None and "W" in self.params:
            self.regularizer.add_grad(self.params["W"], self.grads["W"])

    def __repr__(self) -> str:
        return type(self).__name__


class PassThrough:
    """A layer that a linked BatchNorm may compute itself (nn/fusion.py): the batch norm sets
    ``bypass`` in each forward, and this layer's next forward then returns its input, as does
    the backward that follows. Taken by that forward only, so a stale flag never skips a
    later call."""
    bypass = False
    _passing = False

    def _take_bypass(self) -> bool:
        self._passing, self.bypass = self.bypass, False
        return self._passing

