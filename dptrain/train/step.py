"""One training step on one process: forward, loss, backward, update.

The data-parallel schedules in parallel/ replace this with the same signature.
"""
from __future__ import annotations


def local_train_step(model, x, y, loss, opt, lr: float, context=None, normalizer=None):
    """Returns (loss value, number of correct predictions) for the batch."""
    logits = model.forward(x, train=True, context=context)
    value = float(loss.forward(logits, y, normalizer=normalizer)) + model.regularization_loss()
    correct = int((logits.argmax(axis=1) == y).sum())
    model.backward(loss.backward())
    opt.step(lr)
    return value, correct
