"""The priority engine under mpiexec (-n 2 and -n 4): on an emulated link the first layer's
bucket completes before a larger one posted earlier, every rank posts the same collectives
(the suite's strict order check) whatever its timing, a plan that chose the engine trains
what one process does, and a resume adopts the saved engine and chunk size bit for bit."""
import time

import numpy as np
import pytest

from dptrain import comm as comms
from dptrain.comm import link_probe
from dptrain.comm.emulated import AlphaBeta
from dptrain.comm.local import LocalCommunicator
from dptrain.parallel import engine, priority
from dptrain.train import TrainConfig, Trainer
from test_data_parallel import world     # COMM_WORLD, order-checked as the suite asks

SLOW = AlphaBeta(1e-3, 1e6)


@pytest.mark.mpi(min_size=2)
def test_the_first_layers_bucket_completes_first_on_an_emulated_link():
    c = world()
    link = comms.create("emulated", inner=c, bandwidth_bps=2e8, latency_s=20e-6)
    eng = priority.PriorityCommThread.over(link, chunk_bytes=16 << 10)
    try:
        late = np.full(1 << 18, 1.0 + c.rank)                 # 2 MiB: 128 chunks, ~80 ms
        first = np.full(1 << 10, 10.0 * c.rank)               # layer 0: 8 KiB
        if c.rank == 1:
            time.sleep(0.02)                                  # a late rank changes nothing
        big = eng.submit(late, priority=9)
        time.sleep(0.005 * (c.rank + 1))
        small = eng.submit(first, priority=0)
        small.wait()
        big.wait()
    finally:
        eng.close()
    assert small.done_at < big.done_at
    n = c.size
    np.testing.assert_array_equal(late, n * (n + 1) / 2)
    np.testing.assert_array_equal(first, 10.0 * n * (n - 1) / 2)


def trainer(comm, **overrides):
    cfg = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", dtype="float64",
               batch_size=24, optimizer="adam", lr=1e-3, sync_bn=True, sync="overlap",
               quiet=True, threads=1, max_steps=None)
    cfg.update(overrides)
    t = Trainer(TrainConfig(**cfg), comm=comm)
    t.run()
    return t


@pytest.fixture
def priority_planned(monkeypatch):
    """A slow link, and the planner offered only the priority engine (what auto takes when
    it is predicted faster), with a chunk size that cuts every bucket."""
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    monkeypatch.setattr(engine, "plan_choices", lambda asked, on_device: ("priority",))
    from dptrain.parallel import planner
    monkeypatch.setattr(planner, "chunk_sizes", lambda net, p: [4096])


@pytest.mark.mpi(min_size=2)
def test_a_priority_plan_trains_what_one_process_does(priority_planned):
    c = world()
    auto = trainer(c, epochs=2)
    plan = auto.dp.auto.plan
    assert (plan.progress, plan.chunk_bytes) == ("priority", 4096)
    assert isinstance(auto.dp.engine, priority.PriorityCommThread)
    assert auto.dp.engine.chunk_bytes == 4096
    plans = c.allreduce_obj([plan.as_dict()])
    assert all(p == plans[0] for p in plans)
    reference = trainer(LocalCommunicator(), epochs=2)
    for k, v in reference.model.state_dict().items():
        np.testing.assert_allclose(auto.model.state_dict()[k], v, rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.mpi(min_size=2)
def test_resume_adopts_the_saved_engine_and_chunk_bitwise(priority_planned, tmp_path_factory):
    c = world()
    d = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    straight = trainer(c, epochs=3)
    stopped = trainer(c, epochs=2, checkpoint_dir=d)
    saved = stopped.dp.auto.plan
    assert saved.progress == "priority"
    resumed = Trainer(TrainConfig(epochs=3, checkpoint_dir=d, resume=True, dtype="float64",
                                  quiet=True, threads=1, model="thesis-cnn",
                                  dataset="synthetic:1x28x28:120", batch_size=24, optimizer="adam",
                                  lr=1e-3, sync_bn=True, sync="overlap", max_steps=None), comm=c)
    assert resumed.dp.auto.plan == saved and resumed.dp.engine.chunk_bytes == 4096
    resumed.run()
    for k, v in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[k], v, err_msg=k)
