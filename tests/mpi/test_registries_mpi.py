"""A progress engine and a transport defined only in this file, registered by name, train on
several ranks to the parameters of the built-in ones: adding either is one file."""
import time

import numpy as np
import pytest

from dptrain import backend, comm as comms
from dptrain.comm import registry
from dptrain.comm.base import Handle
from dptrain.parallel import PROGRESS_MODES, engine
from dptrain.train import TrainConfig, Trainer
from test_transport_registry import COUNTING


class Finished(Handle):
    def __init__(self):
        self.done_at = time.perf_counter()

    def wait(self):
        pass

    def test(self):
        return True


class Eager(engine.ProgressEngine):
    """Completes each reduction when it is submitted (no overlap at all)."""

    def __init__(self, comm):
        self.comm = comm

    def submit(self, buf, priority=0):
        self.comm.allreduce(buf)
        return Finished()

    def submit_gather(self, send, recv, priority=0):
        recv[...] = self.comm.allgather(send)
        return Finished()

    def poll(self):
        pass

    def close(self, wait=True):
        pass


def train(**kw):
    cfg = TrainConfig(model="mlp", dataset="synthetic:1x8x8:64", dtype="float64", max_steps=4,
                      batch_size=16, quiet=True, threads=1, bucket_mb=0.001, **kw)
    cfg.validate()
    t = Trainer(cfg, comm=comms.create("mpi"))
    t.run()
    backend.set_dtype("float32")
    return t.model.state_dict()


def same(got, want):
    for k in want:
        if comms.create("mpi").size == 2:         # a sum of two is exact in any order
            np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        else:
            np.testing.assert_allclose(got[k], want[k], rtol=1e-12, atol=1e-15, err_msg=k)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["overlap", "overlap-fc"])
def test_a_registered_progress_engine_trains_like_poll(sync):
    # registered here, not at import: the unit run collects this file too, and a name left
    # registered would change every other test's list of engines
    engine.register("eager")(Eager)
    try:
        assert "eager" in PROGRESS_MODES
        _compare_with_poll(sync)
    finally:
        engine.unregister("eager")


def _compare_with_poll(sync):
    fc = {"fc_replicate": "all"} if sync == "overlap-fc" else {}   # gathers through the engine
    same(train(sync=sync, comm_progress="eager", **fc), train(sync=sync, comm_progress="poll", **fc))


@pytest.mark.mpi(min_size=2)
def test_a_registered_transport_is_wrapped_over_mpi_and_trains_like_mpi():
    built = []
    comms.register(registry.Transport(
        "counting", COUNTING.devices, COUNTING.description, COUNTING.build,
        over_mpi=lambda mpi_comm: built.append(COUNTING.over_mpi(mpi_comm)) or built[-1]))
    try:
        got = train(sync="overlap", comm="counting")
    finally:
        registry.unregister("counting")
    assert built and sum(built[0].calls.values()) > 0
    same(got, train(sync="overlap", comm="mpi"))
