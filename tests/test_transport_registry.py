"""A transport defined only here, registered by name, shows in --comm and trains to the
same float64 parameters as the plain communicator: adding a transport is one file."""
from collections import Counter

import numpy as np
import pytest

from dptrain import backend, comm as comms
from dptrain.comm import registry
from dptrain.comm.base import Communicator
from dptrain.comm.local import LocalCommunicator
from dptrain.errors import UsageError
from dptrain.train import TrainConfig, Trainer


class CountingCommunicator(Communicator):
    """Every operation passed to ``inner``, counted by name."""

    def __init__(self, inner: Communicator):
        self.inner, self.calls = inner, Counter()
        self.rank, self.size = inner.rank, inner.size
        self.local_rank, self.local_size = inner.local_rank, inner.local_size

    def _pass(name):
        def op(self, *args, **kwargs):
            self.calls[name] += 1
            return getattr(self.inner, name)(*args, **kwargs)
        op.__name__ = name
        return op

    allreduce, iallreduce = _pass("allreduce"), _pass("iallreduce")
    allgather, iallgather = _pass("allgather"), _pass("iallgather")
    bcast, barrier = _pass("bcast"), _pass("barrier")
    allreduce_obj, bcast_obj = _pass("allreduce_obj"), _pass("bcast_obj")

    def dup(self):
        return CountingCommunicator(self.inner.dup())


COUNTING = registry.Transport(
    "counting", ("cpu",), "counts every call on an inner communicator",
    build=lambda inner=None, **kw: CountingCommunicator(inner or comms.default()),
    over_mpi=lambda mpi_comm: CountingCommunicator(mpi_comm))


@pytest.fixture
def counting():
    comms.register(COUNTING)
    yield COUNTING
    registry.unregister("counting")


def train(communicator, **kw):
    cfg = TrainConfig(model="mlp", dataset="synthetic:1x8x8:48", dtype="float64", max_steps=3,
                      batch_size=16, quiet=True, threads=1, sync="overlap", **kw)
    t = Trainer(cfg, comm=communicator)
    t.run()
    backend.set_dtype("float32")
    return t.model.state_dict()


def test_a_registered_transport_is_created_by_name_and_trains_alike(counting):
    c = comms.create("counting", inner=LocalCommunicator())
    got = train(c, comm="counting")
    want = train(LocalCommunicator())
    assert c.calls["allreduce_obj"] > 0          # the trainer really talked through it
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_registered_transport_shows_in_the_comm_choices(counting):
    from dptrain.comm import choice
    from dptrain.train_flags import add_train_flags
    import argparse
    assert choice.PREFERENCES[-1] == "counting"
    assert comms.choose("counting", [choice.RankCaps("cpu")]) == ("counting", "as asked")
    TrainConfig(model="mlp", comm="counting").validate()
    p = argparse.ArgumentParser()
    add_train_flags(p, ["mlp"])
    assert "staged, counting" in " ".join(p.format_help().split())


def test_an_unregistered_name_is_refused_as_before():
    with pytest.raises(UsageError, match=r"--comm: unknown value 'counting' \(choose auto, mpi, "
                                         r"nccl, cuda-mpi, staged\)"):
        TrainConfig(model="mlp", comm="counting").validate()
    with pytest.raises(ValueError, match="choose mpi, local, nccl, cuda-mpi, staged or emulated"):
        comms.create("counting")
