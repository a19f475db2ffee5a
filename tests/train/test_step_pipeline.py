"""The host-read pipeline that keeps a GPU step free of host round trips, exercised on the
CPU with copies that behave like device copies (not ready until read)."""
from contextlib import nullcontext

import numpy as np
import pytest

from dptrain import backend
from dptrain.comm.local import LocalCommunicator
from dptrain.parallel.nonfinite import NonfiniteWatch
from dptrain.train.step_metrics import StepMetrics


class LaggingCopy(backend.HostCopy):
    """A device-like copy: never ready before it is read."""
    reads = 0

    @property
    def ready(self) -> bool:
        return False

    def value(self):
        LaggingCopy.reads += 1
        return super().value()


def test_host_values_lag_one_step():
    m = StepMetrics(LocalCommunicator(), lambda what, phase: nullcontext(), pipeline="host")
    got = [m.post(s, 0.1, 8, float(s), s, 0) for s in range(3)]
    assert [[r.step for r in g] for g in got] == [[], [0], [1]]
    assert [(r.step, r.loss, r.correct) for r in m.drain()] == [(2, 2.0, 2)]


def test_device_values_lag_two_steps_and_are_read_after_the_next_step_is_queued(monkeypatch):
    monkeypatch.setattr(backend, "HostCopy", LaggingCopy)
    LaggingCopy.reads = 0
    m = StepMetrics(LocalCommunicator(), lambda what, phase: nullcontext(), pipeline="device")
    got = []
    for s in range(4):
        got.append(m.post(s, 0.1, 8, np.float64(s), np.int64(2 * s), int(s == 3)))
        assert LaggingCopy.reads == max(s, 0)      # step s is read only once s + 1 is posted
    assert [[r.step for r in g] for g in got] == [[], [], [0], [1]]
    rest = m.drain()
    assert [(r.step, r.correct, r.stop) for r in rest] == [(2, 4, False), (3, 6, True)]
    assert m.drain() == []


class RecordingComm(LocalCommunicator):
    """One process that notes which collective it was asked for, and when."""

    def __init__(self):
        self.calls = []

    def allreduce(self, buf):
        self.calls.append(("allreduce", len(buf)))

    def iallreduce(self, buf):
        self.calls.append(("iallreduce", len(buf)))
        return super().iallreduce(buf)


@pytest.mark.parametrize("pipeline", ["host", "device"])
def test_the_collectives_posted_do_not_depend_on_readiness(monkeypatch, pipeline):
    """Whether a copy is ready is local timing (a CUDA event query): the reductions posted
    at each step must be the same whatever it answers, or ranks pair different collectives."""
    sequences = []
    for seed in range(4):
        rng = np.random.default_rng(seed)

        class RandomlyReady(backend.HostCopy):
            @property
            def ready(self):
                return bool(rng.integers(2))
        monkeypatch.setattr(backend, "HostCopy", RandomlyReady)
        comm = RecordingComm()
        m = StepMetrics(comm, lambda what, phase: nullcontext(), pipeline=pipeline)
        seq = []
        for s in range(6):
            m.post(s, 0.1, 8, np.float64(s), np.int64(s), 0)
            seq.append(list(comm.calls))
        m.drain()
        seq.append(list(comm.calls))
        sequences.append(seq)
    assert all(s == sequences[0] for s in sequences)
    lag = {"host": 0, "device": 1}[pipeline]           # steps whose post posts no reduction
    assert [len(calls) for calls in sequences[0][:6]] == [max(0, s + 1 - lag) for s in range(6)]


def test_synchronous_metrics_complete_at_once():
    m = StepMetrics(LocalCommunicator(), lambda what, phase: nullcontext(), pipeline="synchronous")
    assert [r.loss for r in m.post(0, 0.1, 8, np.float64(1.5), 3, 0)] == [1.5]


def test_nonfinite_watch_reads_only_older_steps_when_asked():
    w = NonfiniteWatch(synchronous=False)
    assert w.record(0, "bucket 0", [np.ones(3)]) is None
    assert w.record(1, "bucket 1", [np.ones(2), np.array([np.nan])]) is None
    assert w.check(before_step=1) is None                 # step 1 not read yet
    assert w.check(before_step=2) == "non-finite gradient in bucket 1 at step 1"
    w.clear()
    assert w.found is None and w.check() is None


def test_synchronous_watch_answers_at_once():
    w = NonfiniteWatch(synchronous=True)
    assert w.record(4, "layer 2", [np.array([1.0, np.inf])]) == "non-finite gradient in layer 2 at step 4"
    with np.errstate(over="ignore"):
        assert NonfiniteWatch(True).record(0, "b", [np.array([1e200, 1e200])]) is not None


def test_training_step_returns_arrays_not_host_numbers():
    """DataParallel hands back the loss and the count as arrays (0-d on the model's device),
    so the trainer decides when to read them."""
    from dptrain import comm as comms, models, nn, optim
    from dptrain.parallel import DataParallel
    model = models.get("mlp", (1, 8, 8), 10, seed=0)
    dp = DataParallel(model, comms.create("local"), schedule="blocking")
    x = np.random.default_rng(0).standard_normal((4, 1, 8, 8)).astype(np.float32)
    loss, correct = dp.train_step(x, np.arange(4), nn.SoftmaxCrossEntropy(), optim.get("sgd", model))
    assert isinstance(loss, (np.ndarray, np.generic)) and isinstance(correct, (np.ndarray, np.generic))
    assert np.isfinite(loss) and 0 <= correct <= 4


@pytest.mark.parametrize("sync", ["blocking", "overlap"])
@pytest.mark.parametrize("device_like", [False, True])
def test_a_non_finite_gradient_with_a_finite_loss_fails_its_step(monkeypatch, sync, device_like):
    """One process: the gradient check alone (the loss stays finite) ends the run at the
    poisoned step, on the CPU at once and with device-like late reads too; no check is left
    pending after a normal run."""
    from dptrain.errors import TrainingFailure
    from dptrain.train import TrainConfig, Trainer
    if device_like:
        monkeypatch.setattr(backend, "HostCopy", LaggingCopy)
        monkeypatch.setattr(backend, "host_reads_are_free", lambda: False)
    cfg = dict(model="mlp", dataset="synthetic:1x8x8:200", max_steps=8, batch_size=16, quiet=True,
               sync=sync, threads=1)
    clean = Trainer(TrainConfig(**cfg))
    clean.run()
    assert clean.dp.watch._pending == []
    t = Trainer(TrainConfig(**cfg))
    backward = t.model.backward

    def poisoned(dy, **kw):
        out = backward(dy, **kw)
        if t.step == 5:
            next(iter(t.model.layers[-1].grads.values())).reshape(-1)[0] = np.inf
        return out
    monkeypatch.setattr(t.model, "backward", poisoned)
    with pytest.raises(TrainingFailure, match=r"non-finite gradient in bucket \d+ .* at step 5"):
        t.run()
