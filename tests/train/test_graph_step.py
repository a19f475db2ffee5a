"""--cuda-graph on, on the CPU: the step captured and replayed through a stand-in for CUDA
stream capture (tests/cuda_graph_standin.py) that fails on what real capture forbids and
replays device work only. Replayed training must equal eager training bitwise."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cuda_graph_standin import (CaptureViolation, DeviceArray, StandinCapture,  # noqa: E402
                                StandinPool, on_device)
from dptrain.comm.local import LocalCommunicator  # noqa: E402
from dptrain.data.prefetch import Prefetcher, make_transfer  # noqa: E402
from dptrain.errors import UsageError  # noqa: E402
from dptrain.optim import fused  # noqa: E402
from dptrain.parallel.nonfinite import NonfiniteWatch  # noqa: E402
from dptrain.train import TrainConfig, Trainer, graph_step  # noqa: E402

# thesis-cnn: convolutions, batch norm (running statistics), dropout (per-step masks)
BASE = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", dtype="float64", batch_size=24,
            quiet=True, threads=1, epochs=2, lr_schedule="cosine", lr=0.5, log_every=1)


def trainer(tmp_path, graph: bool, monkeypatch=None, name="m", **kw):
    cfg = TrainConfig(**{**BASE, **kw, "cuda_graph": "on" if graph else "off",
                         "metrics_out": str(tmp_path / f"{name}.jsonl")})
    t = Trainer(cfg, comm=LocalCommunicator())
    t.capture = None
    if graph:
        on_device(t.model)
        t.capture = StandinCapture(lambda: [t.dp, t.opt, t.loss, t.model], monkeypatch)
        t.graph = graph_step.for_trainer(t, capture=t.capture)
        load = t.step_inputs.load          # the batch arrives as device arrays
        t.inputs = Prefetcher(lambda *a: [v.view(DeviceArray) for v in load(*a)],
                              make_transfer())
    return t


def losses(tmp_path, name):
    lines = [json.loads(s) for s in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["accuracy"]) for r in lines if r["type"] == "step"]


def assert_same_training(a, b):
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)
    assert {k: st["t"] for k, st in a.opt.state.items()} == \
        {k: st["t"] for k, st in b.opt.state.items()}
    for k, st in a.opt.state.items():
        for s, v in st.items():
            np.testing.assert_array_equal(np.asarray(v), np.asarray(b.opt.state[k][s]))
    assert a.dp.step == b.dp.step


@pytest.mark.parametrize("optimizer", ["adadelta", "momentum", "rmsprop"])
def test_replayed_steps_equal_eager_steps(tmp_path, monkeypatch, capfd, optimizer):
    eager = trainer(tmp_path, False, name="eager", optimizer=optimizer)
    eager.run()
    graphed = trainer(tmp_path, True, monkeypatch, name="graph", optimizer=optimizer)
    graphed.run()
    g = graphed.graph
    assert graphed.capture.captures == 1 and g.disabled is None
    assert g.eager_steps == 1 and g.launches == eager.dp.step - 1    # warm-up, then the graph
    assert_same_training(eager, graphed)
    assert losses(tmp_path, "eager") == losses(tmp_path, "graph")      # outputs read back
    assert "step captured with a batch of 24" in capfd.readouterr().err


@pytest.mark.parametrize("optimizer", ["adam", "adamax"])
def test_adam_and_adamax_replay_through_the_fused_kernels(tmp_path, monkeypatch, capfd,
                                                          host_launcher, optimizer):
    """Their bias corrections change every step. The fused kernels (compiled for the CPU,
    as CuPy runs them on a GPU) read them, with the learning rate, from the buffer that
    graph_step fills before each replay (Optimizer.device_scalars): bitwise the eager run
    through the same kernels. A kernel given host scalars would replay the capture's."""
    monkeypatch.setattr(fused, "host_launcher", host_launcher)
    kw = dict(optimizer=optimizer, lr=2e-3)
    eager = trainer(tmp_path, False, name="eager", **kw)
    eager.run()
    graphed = trainer(tmp_path, True, monkeypatch, name="graph", **kw)
    graphed.run()
    assert graphed.graph.disabled is None and graphed.capture.captures == 1
    assert graphed.graph.launches == eager.dp.step - 1
    assert_same_training(eager, graphed)
    assert losses(tmp_path, "eager") == losses(tmp_path, "graph")


def test_a_partial_batch_runs_eagerly_and_says_so_once(tmp_path, monkeypatch, capfd):
    # 104 training samples in batches of 24: a last batch of 8 in each of 3 epochs
    kw = dict(epochs=3, optimizer="sgd", dataset="synthetic:1x28x28:130")
    eager = trainer(tmp_path, False, name="eager", **kw)
    eager.run()
    capfd.readouterr()
    graphed = trainer(tmp_path, True, monkeypatch, name="graph", **kw)
    graphed.run()
    err = capfd.readouterr().err
    assert graphed.steps_per_epoch == 5 and graphed.graph.eager_steps == 1 + 3
    assert err.count("runs eagerly: the graph replays steps of 24") == 1, err
    assert "a step of 8 samples" in err
    assert_same_training(eager, graphed)
    assert losses(tmp_path, "eager") == losses(tmp_path, "graph")


def test_a_failed_capture_falls_back_to_eager_steps_with_the_reason(tmp_path, monkeypatch, capfd):
    """The gradient check's host copy inside the step is what real capture refuses: the
    stand-in refuses it too; training goes on eagerly, the same as without a graph."""
    monkeypatch.setattr(graph_step, "_RecordedWatch", lambda: NonfiniteWatch(synchronous=False))
    eager = trainer(tmp_path, False, name="eager")
    eager.run()
    capfd.readouterr()
    graphed = trainer(tmp_path, True, monkeypatch, name="graph")
    graphed.run()
    err = capfd.readouterr().err
    assert "capture failed (CaptureViolation: a host copy" in graphed.graph.disabled
    assert err.count("every step runs eagerly: capture failed") == 1
    assert graphed.capture.launches == 0
    assert_same_training(eager, graphed)


def test_a_host_side_dropout_key_is_refused_by_the_stand_in(tmp_path, monkeypatch):
    """A key computed from int(step) would bake the capture step's masks into the graph."""
    from dptrain.nn import random as keyed
    host_key = keyed.step_key
    monkeypatch.setattr(keyed, "step_key", lambda prefix, step: host_key(prefix, int(step)))
    t = trainer(tmp_path, True, monkeypatch, max_steps=3)
    t.run()
    assert "int() of a device array inside a CUDA graph capture" in t.graph.disabled


def test_a_replay_does_not_run_the_hosts_side_of_the_step(tmp_path, monkeypatch):
    """The stand-in advances no Python counter at a replay: without _host_effects the update
    counts (checkpointed) and the step count fall behind, which is what a GPU would do."""
    monkeypatch.setattr(graph_step.GraphStep, "_host_effects", lambda self: None)
    t = trainer(tmp_path, True, monkeypatch, max_steps=5)
    t.run()
    assert t.dp.step == 2                                   # warm-up and capture only
    assert {st["t"] for st in t.opt.state.values()} == {2}


def test_the_stand_in_refuses_host_reads_syncs_and_a_dropped_pool(monkeypatch):
    from dptrain import backend
    cap = StandinCapture(lambda: [], monkeypatch)
    a = np.ones(3).view(DeviceArray)
    for body in (lambda: float(a.sum()), lambda: bool(a[0] > 0), lambda: a.item(0),
                 lambda: backend.to_numpy(a), lambda: backend.synchronize(),
                 lambda: backend.HostCopy(a)):
        with pytest.raises(CaptureViolation):
            cap.capture(body, StandinPool())
    with pytest.raises(CaptureViolation, match="private memory pool"):
        cap.capture(lambda: a * 2, None)
    graph, _ = cap.capture(lambda: a * 2, StandinPool())         # the pool dies with it
    with pytest.raises(CaptureViolation, match="memory pool was released"):
        cap.launch(graph)
    assert float(a.sum()) == 3.0                                   # outside a capture: fine


@pytest.mark.parametrize("kw, why", [
    (dict(optimizer="adam"), "adam's bias correction"),        # without the fused kernels
    (dict(accumulate=2), "--accumulate"),
    (dict(sampler="obs"), "adaptive sampler"),
    (dict(skip_nonfinite=1), "--skip-nonfinite"),
])
def test_what_cannot_be_captured_runs_eagerly_from_the_start(tmp_path, monkeypatch, capfd, kw, why):
    t = trainer(tmp_path, True, monkeypatch, max_steps=4, **kw)
    t.run()
    err = capfd.readouterr().err
    assert why in t.graph.disabled and t.capture.captures == 0
    assert err.count(f"every step runs eagerly: {t.graph.disabled}") == 1


def test_on_the_cpu_every_step_is_eager_with_the_reason(tmp_path, capfd):
    t = Trainer(TrainConfig(**{**BASE, "max_steps": 2, "cuda_graph": "on"}),
                comm=LocalCommunicator())
    t.run()
    assert "every step runs eagerly: no GPU" in capfd.readouterr().err


def test_the_flag_takes_off_or_on():
    with pytest.raises(UsageError, match="--cuda-graph"):
        TrainConfig(**{**BASE, "cuda_graph": "auto"}).validate()


def test_ranks_agree_on_the_first_reason():
    class Two(LocalCommunicator):
        rank, size = 0, 2

        def allreduce_obj(self, obj):          # what rank 1 would contribute
            return obj + [(1, "rank one's reason")]
    assert graph_step.agree(Two(), None) == "rank 1: rank one's reason"
    assert graph_step.agree(Two(), "mine") == "rank 0: mine"
    assert graph_step.agree(LocalCommunicator(), None) is None


def test_static_scalars_are_0_d_under_cupys_like_rules(monkeypatch):
    """CuPy's empty_like/zeros_like take a falsy shape (()) as "the prototype's shape"."""
    class CupyLike:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty_like(a, dtype=None, shape=None):
            return np.empty_like(a, dtype=dtype, shape=shape if shape else a.shape)

        @staticmethod
        def zeros_like(a, dtype=None, shape=None):
            return np.zeros_like(a, dtype=dtype, shape=shape if shape else a.shape)
    monkeypatch.setattr(graph_step, "get_array_module", lambda a: CupyLike())
    g = graph_step.GraphStep.__new__(graph_step.GraphStep)
    x = np.zeros((4, 1, 2, 2), np.float32)
    g._allocate_static(x, np.zeros(4, np.int64), type("C", (), {"sample_ids": np.arange(4)}))
    xs, ys, ids, step, scalars = g.static
    assert xs.shape == x.shape and ids.shape == (4,) and step.shape == ()
    assert step.dtype == np.uint64 and scalars.dtype == np.float32
    assert scalars.shape == (fused.DYNAMIC_SCALARS,) and (scalars == 1).all()   # dyn: ones


def test_a_checkpoint_written_between_replays_resumes_to_the_eager_run(tmp_path, monkeypatch):
    kw = dict(lr_schedule="constant", lr=0.05, optimizer="momentum")   # not tied to the length
    straight = trainer(tmp_path, False, name="straight", epochs=3, **kw)
    straight.run()
    d = str(tmp_path / "ck")
    first = trainer(tmp_path, True, monkeypatch, name="first", epochs=1, checkpoint_dir=d,
                    checkpoint_every="2", **kw)
    first.run()
    assert first.graph.launches > 0
    resumed = trainer(tmp_path, True, monkeypatch, name="resumed", epochs=3, checkpoint_dir=d,
                      resume=True, **kw)
    resumed.run()
    assert resumed.resumed_from is not None and resumed.graph.launches > 0
    assert_same_training(straight, resumed)
