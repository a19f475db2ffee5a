"""Losses. ``forward`` returns the scalar loss, ``backward`` its gradient w.r.t. the input.

``normalizer`` is the number the summed loss is divided by. It defaults to the
local batch size; data-parallel training passes the *global* batch size, so
that the sum over ranks of local gradients is exactly the global-batch mean
gradient even when ranks hold slices of different sizes.
"""
from __future__ import annotations

from ..backend import get_array_module


class SoftmaxCrossEntropy:
    """Fused softmax + cross-entropy; gradient (softmax - onehot) / B (seed 000, eq. 3.26)."""

    def forward(self, logits, labels, weights=None, normalizer=None):
        xp = get_array_module(logits)
        b = logits.shape[0]
        shifted = logits - logits.max(axis=1, keepdims=True)      # log-sum-exp trick
        exp = xp.exp(shifted)
        sum_exp = exp.sum(axis=1, keepdims=True)
        labels = xp.asarray(labels)
        rows = xp.arange(b)
        log_p = shifted[rows, labels] - xp.log(sum_exp[:, 0])
        self.sample_losses = -log_p                               # per-sample, for samplers
        self._probs = exp / sum_exp
        self._labels, self._weights = labels, weights
        self._norm = float(b if normalizer is None else normalizer)
        per = self.sample_losses if weights is None else self.sample_losses * weights
        return per.sum() / self._norm

    @property
    def probs(self):
        return self._probs

    def backward(self):
        d = self._probs.copy()
        d[get_array_module(d).arange(d.shape[0]), self._labels] -= 1.0
        if self._weights is not None:
            d *= self._weights[:, None]
        d /= self._norm
        return d


class MSE:
    """L = (1/B) sum_i 1/2 ||y_i - t_i||^2; integer labels are one-hot encoded."""

    def forward(self, pred, target, weights=None, normalizer=None):
        xp = get_array_module(pred)
        target = xp.asarray(target)
        if target.ndim == 1 and pred.ndim == 2:
            onehot = xp.zeros_like(pred)
            onehot[xp.arange(pred.shape[0]), target] = 1.0
            target = onehot
        self._diff = pred - target
        self.sample_losses = 0.5 * (self._diff * self._diff).reshape(pred.shape[0], -1).sum(axis=1)
        self._weights = weights
        self._norm = float(pred.shape[0] if normalizer is None else normalizer)
        per = self.sample_losses if weights is None else self.sample_losses * weights
        return per.sum() / self._norm

    def backward(self):
        d = self._diff / self._norm
        if self._weights is not None:
            d = d * self._weights.reshape((-1,) + (1,) * (d.ndim - 1))
        return d


LOSSES = {"softmax-cross-entropy": SoftmaxCrossEntropy, "mse": MSE}
