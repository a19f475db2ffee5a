"""The input pipeline's ordering, with a fake asynchronous transfer that records what a
CUDA implementation would be asked to do (copies per slot, waits, releases)."""
import numpy as np
import pytest

from dptrain.data import prefetch
from dptrain.data.prefetch import Prefetcher


class RecordingTransfer:
    asynchronous = True

    def __init__(self):
        self.log = []

    def copy(self, slot, host_arrays):
        self.log.append(("copy", slot))
        return [a.copy() for a in host_arrays], ("ready", slot)

    def wait(self, ready):
        self.log.append(("wait",) + ready)

    def release(self, slot):
        self.log.append(("release", slot))


def load(step, ids, weights):
    return [np.asarray(ids) * 10 + step]


def test_prefetched_batches_are_used_and_slots_alternate():
    t = RecordingTransfer()
    p = Prefetcher(load, t)
    got = p.take(0, [1, 2])
    p.prefetch(1, [3, 4])
    got1 = p.take(1, [3, 4])
    p.prefetch(2, [5])
    got2 = p.take(2, [5])
    np.testing.assert_array_equal(got[0], [10, 20])
    np.testing.assert_array_equal(got1[0], [31, 41])
    np.testing.assert_array_equal(got2[0], [52])
    assert (p.hits, p.misses) == (2, 0)
    # step 1 copies into slot 1 while step 0 (slot 0) runs; taking step 1 releases slot 0,
    # so step 2's copy into slot 0 may wait for step 0 only
    assert t.log == [("copy", 0), ("wait", "ready", 0),
                     ("copy", 1), ("release", 0), ("wait", "ready", 1),
                     ("copy", 0), ("release", 1), ("wait", "ready", 0)]


def test_a_prefetch_for_other_ids_is_dropped():
    p = Prefetcher(load, RecordingTransfer())
    p.prefetch(0, [1, 2])
    np.testing.assert_array_equal(p.take(0, [7])[0], [70])
    p.prefetch(1, [1])
    np.testing.assert_array_equal(p.take(2, [1])[0], [12])       # another step: reloaded
    assert (p.hits, p.misses) == (0, 2)


def test_without_a_device_nothing_is_loaded_early():
    calls = []
    p = Prefetcher(lambda s, i, w: calls.append(s) or [np.asarray(i)])
    p.prefetch(0, [1])
    assert calls == []
    p.take(0, [1])
    assert calls == [0]


@pytest.mark.parametrize("accumulate,sampler", [(1, "uniform"), (2, "uniform"), (1, "as")])
def test_training_with_an_asynchronous_pipeline_is_unchanged(monkeypatch, accumulate, sampler):
    """Every step's batch but an epoch's first arrives through prefetch (no miss), and
    training is bitwise the same."""
    from dptrain.train import TrainConfig, Trainer
    cfg = dict(model="mlp", dataset="synthetic:1x8x8:200", max_steps=12, epochs=2, batch_size=16,
               quiet=True, augment="flip", accumulate=accumulate, sampler=sampler, threads=1)

    def run():
        t = Trainer(TrainConfig(**cfg))
        t.run()
        return t

    plain = run()
    monkeypatch.setattr(prefetch, "make_transfer", lambda: RecordingTransfer())
    monkeypatch.setattr("dptrain.train.trainer.make_transfer", lambda: RecordingTransfer())
    piped = run()
    epochs_begun = -(-12 // piped.steps_per_epoch)
    assert piped.steps_per_epoch < 12 and piped.inputs.misses == 0
    assert piped.inputs.hits == 12 - epochs_begun
    for (k, a), (_, b) in zip(plain.model.named_params(), piped.model.named_params()):
        np.testing.assert_array_equal(a, b, err_msg=k)
