"""--cuda-graph on under mpiexec (-n 2, -n 4), through the capture stand-in: every rank takes
the same path (capture, replay, eager fallback) at the same step, so the collectives stay in
the same order (the suite's strict order checker compares each one), and one rank that
cannot capture makes every rank run eagerly.

The stand-in runs the step's MPI reductions again at each replay, as a graph replays its
NCCL reductions; MPI itself is not capturable, so the tests let the stand-in pass it as a
capturable transport."""
import numpy as np
import pytest

from cuda_graph_standin import DeviceArray, StandinCapture, on_device
from dptrain.data.prefetch import Prefetcher, make_transfer
from dptrain.train import TrainConfig, Trainer, graph_step
from test_data_parallel import world

KW = dict(model="thesis-cnn", dataset="synthetic:1x28x28:130", dtype="float64", batch_size=22,
          optimizer="momentum", lr=0.05, quiet=True, threads=1, epochs=2, sync="blocking",
          bucket_mb=0.05, sync_bn=True)


def trainer(graph: bool, monkeypatch, can_capture=lambda rank: True):
    t = Trainer(TrainConfig(**KW, cuda_graph="on" if graph else "off"), comm=world())
    if graph:
        on_device(t.model)
        cap = StandinCapture(lambda: [t.dp, t.opt, t.loss, t.model], monkeypatch) \
            if can_capture(t.rank) else None
        t.graph = graph_step.for_trainer(t, capture=cap, capturable_transports=("mpi",))
        t.stand_in = cap
        load = t.step_inputs.load
        t.inputs = Prefetcher(lambda *a: [v.view(DeviceArray) for v in load(*a)],
                              make_transfer())
    t.run()
    return t


def same_everywhere(comm, value):
    return [v for _, v in sorted(comm.allreduce_obj([(comm.rank, value)]))]


@pytest.mark.mpi(min_size=2)
def test_every_rank_captures_replays_and_falls_back_alike(monkeypatch, capfd):
    eager = trainer(False, monkeypatch)
    graphed = trainer(True, monkeypatch)
    g = graphed.graph
    # 104 samples in batches of 22: 4 full steps and a last one of 16 in each epoch
    assert g.disabled is None and graphed.stand_in.captures == 1
    assert g.eager_steps == 1 + 2 and g.launches == 10 - 3
    paths = same_everywhere(graphed.comm, (g.eager_steps, g.launches, graphed.stand_in.launches))
    assert len(set(paths)) == 1, paths
    a, b = eager.model.state_dict(), graphed.model.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    err = capfd.readouterr().err
    if graphed.rank == 0:
        assert err.count("runs eagerly: the graph replays steps of 22") == 1
    else:
        assert "--cuda-graph" not in err                     # rank 0 alone says it


@pytest.mark.mpi(min_size=2)
def test_one_rank_that_cannot_capture_makes_every_rank_run_eagerly(monkeypatch, capfd):
    graphed = trainer(True, monkeypatch, can_capture=lambda rank: rank != 1)
    g = graphed.graph
    assert g.disabled == "rank 1: no GPU: CUDA graphs need CuPy on a GPU"
    assert g.launches == 0 and g.eager_steps == 10
    assert graphed.stand_in is None or graphed.stand_in.captures == 0
    err = capfd.readouterr().err
    assert err.count("every step runs eagerly: rank 1: no GPU") == (graphed.rank == 0)
