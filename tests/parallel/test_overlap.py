"""The overlap schedule's mechanics, in one process, with a mirrored fake communicator.

``MirrorComm`` pretends to be 2 ranks holding identical data: a sum over ranks is twice
the local value. With losses normalised by the global batch (2 x local), the reduced
gradient equals the one-process gradient, so parameters must match plain training exactly,
whatever the order in which reductions and deferred updates happen. It also logs events,
so the tests can check *when* reductions are posted and waited for.
"""
import threading
import time

import numpy as np
import pytest

from dptrain import models, nn, optim
from dptrain.comm.local import LocalCommunicator
from dptrain.nn import BatchContext
from dptrain.parallel import DataParallel


class MirrorComm(LocalCommunicator):
    size = 2

    def __init__(self, log, delay=0.0):
        self.log, self.delay = log, delay

    def allreduce(self, buf) -> None:
        self.log.append(("reduce-start", threading.current_thread().name))
        time.sleep(self.delay)
        buf *= 2

    def iallreduce(self, buf):
        self.allreduce(buf)
        return super().iallreduce(buf)

    def dup(self):
        return self


class Logged(nn.Layer):
    """Wraps a layer to log its forward and backward in the shared event list."""

    def __init__(self, inner, log):
        super().__init__()
        self.inner, self.log = inner, log
        self.params, self.grads, self.buffers = inner.params, inner.grads, inner.buffers

    def initialize(self, rng):
        self.inner.index = self.index
        self.inner.initialize(rng)
        self.params, self.grads, self.buffers = self.inner.params, self.inner.grads, self.inner.buffers

    def output_shape(self, s):
        return self.inner.output_shape(s)

    def forward(self, x, train):
        self.log.append(("forward", self.index))
        self.inner.context = self.context
        return self.inner.forward(x, train)

    def backward(self, dy):
        self.inner.needs_input_grad = self.needs_input_grad
        self.log.append(("backward", self.index))
        return self.inner.backward(dy)


def build(log=None):
    layers = models.zoo.thesis_cnn((1, 28, 28), 10)
    if log is not None:
        layers = [Logged(layer, log) for layer in layers]
    return models.Sequential(layers, (1, 28, 28), seed=4)


def batches(n=4, size=8):
    rng = np.random.default_rng(0)
    return [(rng.random((size, 1, 28, 28), dtype=np.float32), rng.integers(0, 10, size),
             np.arange(i * size, (i + 1) * size)) for i in range(n)]


def run(model, dp_or_none, data):
    opt = optim.get("adam", model)
    loss = nn.SoftmaxCrossEntropy()
    for step, (x, y, ids) in enumerate(data):
        ctx = BatchContext(ids, step)
        if dp_or_none is None:
            loss.forward(model.forward(x, True, ctx), y)
            model.backward(loss.backward())
            opt.step()
        else:
            dp_or_none.train_step(x, y, loss, opt, global_batch=2 * len(x), context=ctx)
    if dp_or_none is not None:
        dp_or_none.close()
    return model.state_dict()


@pytest.mark.parametrize("schedule,progress", [("blocking", "thread"), ("overlap", "thread"),
                                               ("overlap", "poll")])
def test_mirrored_two_ranks_equal_plain_training(schedule, progress):
    data = batches()
    plain = run(build(), None, data)
    model = build()
    dp = DataParallel(model, MirrorComm([]), schedule=schedule, bucket_mb=0.01, progress=progress)
    assert len(dp.buckets) > 2
    got = run(model, dp, data)
    for k in plain:
        np.testing.assert_allclose(got[k], plain[k], rtol=1e-5, atol=1e-6, err_msg=k)


def test_overlap_posts_during_backprop_and_waits_in_next_forward():
    log = []
    model = build(log)
    dp = DataParallel(model, MirrorComm(log, delay=0.002), schedule="overlap", bucket_mb=0.01,
                      progress="thread")
    original = dp._engine.submit

    def logged_submit(buf, **kw):
        log.append(("post", len(log)))
        return original(buf, **kw)

    dp._engine.submit = logged_submit
    run(model, dp, batches(n=2))
    first_step = log[:log.index(("forward", 0), 1)]
    posts = [i for i, e in enumerate(first_step) if e[0] == "post"]
    backwards = [i for i, e in enumerate(first_step) if e[0] == "backward"]
    # buckets are handed over while backprop still has layers to go, not after it
    assert posts and posts[0] < backwards[-1]
    assert sum(1 for p in posts if p < backwards[-1]) >= len(dp.buckets) - 1
    # reductions run on the communication thread, not the main one
    assert {e[1] for e in log if e[0] == "reduce-start"} == {"dptrain-comm"}
    assert dp.stats.comm_s > 0 and dp.stats.bytes > 0
