"""Evaluation: loss and accuracy of a model over a whole split, in inference mode."""
from __future__ import annotations

from .. import backend
from ..nn import SoftmaxCrossEntropy


def evaluate_sums(model, x, y, batch_size: int = 1000):
    """(sum of losses, number correct, count) over x, y; sums so ranks can add them up."""
    xp = backend.xp
    loss = SoftmaxCrossEntropy()
    total_loss, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        xb = xp.asarray(x[start:start + batch_size], dtype=model.dtype)
        yb = xp.asarray(y[start:start + batch_size])
        logits = model.forward(xb, train=False)
        total_loss += float(loss.forward(logits, yb, normalizer=1.0))
        correct += int((logits.argmax(axis=1) == yb).sum())
    return total_loss, correct, len(x)


def evaluate(model, x, y, batch_size: int = 1000) -> dict:
    total, correct, n = evaluate_sums(model, x, y, batch_size)
    return {"loss": total / max(n, 1), "accuracy": correct / max(n, 1), "samples": n}

