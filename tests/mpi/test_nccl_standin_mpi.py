"""Training through NCCLCommunicator on 2 and 4 ranks with the CPU stand-in for CuPy's NCCL
(tests/nccl_standin.py: every NCCL call is carried out over MPI in issue order): the same
parameters as one process with every schedule, and the NCCL calls issued in the same order
on every rank."""
import numpy as np
import pytest

import nccl_standin
from dptrain import comm as comms
from dptrain.comm.local import LocalCommunicator
from dptrain.comm.nccl import NCCLCommunicator
from dptrain.train import TrainConfig, Trainer


def train(comm, sync):
    cfg = TrainConfig(model="thesis-cnn", dataset="synthetic:1x28x28:120", dtype="float64",
                      max_steps=6, batch_size=24, quiet=True, threads=1, sync=sync, sync_bn=True,
                      bucket_mb=0.05, optimizer="adam", lr=1e-3)
    t = Trainer(cfg, comm=comm)
    t.run()
    return t.model.state_dict()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap", "overlap-fc"])
def test_nccl_transport_matches_one_process(monkeypatch, sync, timing):
    world = comms.create("mpi")
    nccl_standin.install(monkeypatch, mpi_comm=world.comm.Dup())
    got = train(NCCLCommunicator(world), sync)
    calls = [e for e in nccl_standin.LOG if e[0].startswith("nccl.")]
    reference = train(LocalCommunicator(), sync)
    for k in reference:
        np.testing.assert_allclose(got[k], reference[k], rtol=1e-9, atol=1e-12, err_msg=k)
    assert calls and len({tuple(map(tuple, c)) for c in world.allreduce_obj([[calls]])}) == 1
