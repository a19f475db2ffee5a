"""The ordering rules of an overlapped data-parallel step, checked as it runs.

PyTorch's reducer checks the same two: each parameter is reported ready once per backward
pass, and no gradient is applied that was not reduced. Broken, they give no error of their
own: a second "ready" shifts the bucket's count into the next step, and a bucket that was
never posted updates every replica with its own local gradient, so the replicas drift apart
silently. Both come from code, not data (a layer whose backward returns None above layers
with parameters, a hook called twice), and both now end the job naming the layer or bucket.
"""
from __future__ import annotations


class ProtocolError(RuntimeError):
    """An internal rule of the data-parallel step was broken (a defect, not bad input)."""


class ReadyLedger:
    """The layers that reported their gradients final in the current backward pass."""

    def __init__(self):
        self._seen: set[int] = set()

    def start(self) -> None:
        self._seen.clear()

    def mark(self, layer: int, step: int) -> None:
        if layer in self._seen:
            raise ProtocolError(f"layer {layer} reported its gradients final twice in the "
                                f"backward pass of step {step}")
        self._seen.add(layer)


def check_reduced(bucket, step: int) -> None:
    """Before a bucket's deferred update: its reduction was posted in the step it belongs to."""
    if not bucket.posted:
        raise ProtocolError(
            f"bucket {bucket.index} (layers {bucket.layers}) was never reduced in step {step}, "
            f"yet its update is due: layers {sorted(bucket.pending)} never reported their "
            "gradients final (did a backward return None above a layer with parameters?)")
