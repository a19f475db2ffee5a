"""The overlapped step's ordering rules raise instead of corrupting replicas silently
(parallel/protocol.py), and the priority engine sends the most urgent chunk first."""
import threading
import time

import numpy as np
import pytest

from dptrain import models, nn, optim
from dptrain.comm.local import LocalCommunicator
from dptrain.parallel import DataParallel
from dptrain.parallel.priority import PriorityCommThread
from dptrain.parallel.protocol import ProtocolError
from test_overlap import MirrorComm       # two ranks holding the same data


class StopsEarly(nn.Layer):
    """A parameter-free layer whose backward returns None: nothing below it gets a gradient,
    although the Dense layer below has parameters."""

    def forward(self, x, train):
        return x

    def backward(self, dy):
        return None


def step_twice(model, dp):
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((8, 6)).astype(np.float32), rng.integers(0, 3, 8)
    opt, loss = optim.get("sgd", model, lr=0.1), nn.SoftmaxCrossEntropy()
    for _ in range(2):
        dp.train_step(x, y, loss, opt)
    dp.flush()


def overlapped(model):
    return DataParallel(model, MirrorComm([]), schedule="overlap", bucket_mb=1e-9, progress="poll")


def test_a_bucket_never_reduced_is_not_applied():
    model = models.Sequential([nn.Dense(6, 5), StopsEarly(), nn.ReLU(), nn.Dense(5, 3)], (6,))
    with pytest.raises(ProtocolError, match=r"bucket \d \(layers \[0\]\) was never reduced in "
                                            r"step 0.*layers \[0\] never reported"):
        step_twice(model, overlapped(model))


def test_a_replicated_layer_whose_output_errors_were_never_gathered_is_not_applied():
    model = models.Sequential([nn.Dense(6, 40), StopsEarly(), nn.ReLU(), nn.Dense(40, 3)], (6,))
    dp = DataParallel(model, MirrorComm([]), schedule="overlap-fc", bucket_mb=1e-9, progress="poll",
                      fc_replicate="all", global_batch=16)
    with pytest.raises(ProtocolError, match="layer 0's output errors were never gathered"):
        step_twice(model, dp)


def test_a_layer_reported_ready_twice_in_one_backward_raises():
    model = models.Sequential([nn.Dense(6, 5), nn.ReLU(), nn.Dense(5, 3)], (6,))
    dp = overlapped(model)
    ready = dp._grad_ready

    def twice(i):
        ready(i)
        if i == 2:
            ready(i)
    dp._grad_ready = twice
    with pytest.raises(ProtocolError, match="layer 2 reported its gradients final twice in "
                                            "the backward pass of step 0"):
        step_twice(model, dp)


def test_a_correct_model_keeps_to_the_rules_over_steps_and_flushes():
    model = models.Sequential([nn.Dense(6, 5), nn.ReLU(), nn.Dense(5, 3)], (6,))
    step_twice(model, overlapped(model))


class _Gated:
    def __init__(self, gate):
        self.gate = gate

    def wait(self):
        if self.gate is not None:
            self.gate.wait(10)

    def test(self):
        return self.gate is None or self.gate.is_set()


class Recording(LocalCommunicator):
    """One rank; the first data reduction completes only when the gate opens, so later ones
    queue up behind it."""

    def __init__(self):
        self.order, self.gate = [], threading.Event()

    def iallreduce(self, buf):
        if buf.dtype == np.int64:                    # the engine's separate agreement
            return _Gated(None)
        self.order.append(int(buf[0]))
        return _Gated(self.gate if len(self.order) == 1 else None)


def test_the_priority_engine_sends_the_most_urgent_chunk_first():
    comm = Recording()
    engine = PriorityCommThread(comm, chunk_bytes=16)          # two float64 values per chunk
    try:
        first = engine.submit(np.full(12, 100.0), priority=100)  # six chunks; the 1st is gated
        deadline = time.monotonic() + 10
        while len(comm.order) < 2 and time.monotonic() < deadline:  # two in flight
            time.sleep(0.001)
        late = [engine.submit(np.full(4, float(p)), priority=p) for p in (7, 2, 5)]
        comm.gate.set()
        for handle in [first, *late]:
            handle.wait()
    finally:
        engine.close()
    # two chunks were in flight, and the two after them were chosen from what those carried
    # (only the first bucket was agreed then); then the lowest priority value (the first
    # layers) first, each bucket's chunks in order, and the rest of the large bucket last
    assert comm.order == [100] * 4 + [2, 2, 5, 5, 7, 7] + [100] * 2
