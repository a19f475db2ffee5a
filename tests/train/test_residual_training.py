"""A residual network through what a chain model goes through in one process: checkpoints and
resume (bitwise), the CUDA kernels' CPU build, CUDA graph capture with its CPU stand-in, the
per-layer profile and `dptrain summary`."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dptrain import models
from dptrain.bench.profile import measure_parts, summarise
from dptrain.bench.timers import HostTimer
from dptrain.comm.local import LocalCommunicator
from dptrain.train import TrainConfig, Trainer
from test_graph_step import assert_same_training, losses, trainer as graph_trainer

RESNET = dict(model="resnet-small", dataset="synthetic:1x8x8:72", dtype="float64", batch_size=24,
              optimizer="adam", lr=1e-3, quiet=True, threads=1)


def run(**kw):
    t = Trainer(TrainConfig(**{**RESNET, **kw}), comm=LocalCommunicator())
    t.run()
    return t


@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_resume_of_a_residual_network_is_bitwise_identical(tmp_path, sync):
    straight = run(epochs=3, sync=sync).model.state_dict()
    d = str(tmp_path / "ck")
    run(epochs=1, sync=sync, checkpoint_dir=d)
    resumed = run(epochs=3, sync=sync, checkpoint_dir=d, resume=True)
    assert resumed.resumed_from is not None
    state = resumed.model.state_dict()
    assert state.keys() == straight.keys()
    for k in straight:
        np.testing.assert_array_equal(state[k], straight[k], err_msg=k)


def test_replayed_residual_steps_equal_eager_steps(tmp_path, monkeypatch, capfd):
    kw = dict(model="resnet-small", dataset="synthetic:1x8x8:120", optimizer="momentum")
    eager = graph_trainer(tmp_path, False, name="eager", **kw)
    eager.run()
    graphed = graph_trainer(tmp_path, True, monkeypatch, name="graph", **kw)
    graphed.run()
    assert graphed.capture.captures == 1 and graphed.graph.disabled is None
    assert graphed.graph.launches == eager.dp.step - 1
    assert_same_training(eager, graphed)
    assert losses(tmp_path, "eager") == losses(tmp_path, "graph")


def test_every_leaf_of_a_residual_network_is_profiled():
    model = models.get("resnet-small", input_shape=(1, 8, 8))
    p = summarise(model, 2, measure_parts(model, batch=2, steps=1, warmup=0, timer=HostTimer()))
    assert [r["index"] for r in p["layers"]] == list(range(len(model.layers)))
    for r, shape in zip(p["layers"], model.shapes):
        assert r["output_shape"] == [2, *shape]
        assert r["forward_ms"] is not None and r["backward_ms"] is not None or r["index"] == 0


def test_summary_command_shows_the_blocks():
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "summary", "--model", "resnet-20"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "residual (layers 3-7): branch + identity shortcut" in res.stdout
    assert "total parameters        272,474" in res.stdout
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "summary", "--model",
                          "resnet-small", "--json"], capture_output=True, text=True, timeout=120)
    report = json.loads(res.stdout)
    assert report["total_params"] == 19_810 and len(report["residual_sums"]) == 3


@pytest.mark.parametrize("kernel_path", ["cuda-kernels"], indirect=True)
def test_kernel_ops_comparison_takes_each_leafs_own_input_shape(kernel_path):
    """A projection shortcut's conv takes its block's input, not the branch's output."""
    from dptrain.bench.kernel_ops import compare_kernel_ops
    report = compare_kernel_ops(["resnet-small"], batch=1, reps=1)
    cases = {r["case"] for r in report["rows"] if r["family"] == "im2col"}
    assert any("Conv2D(8->16, 1x1, stride 2, pad 0) on 8x28x28" in c for c in cases), cases


def test_the_scaling_predictor_times_every_leaf_of_a_residual_network():
    from dptrain.bench.predict import measure_layer_times
    model = models.get("resnet-small", input_shape=(1, 8, 8))
    times = measure_layer_times(model, batch=2, steps=1)
    assert len(times.fwd) == len(model.layers) and all(t > 0 for t in times.fwd)
    assert all(t > 0 for t in times.bwd[1:])          # layer 0 computes no input gradient


def test_the_pytorch_reference_resnet20_has_the_same_parameters():
    pytest.importorskip("torch")
    from dptrain.bench import torch_reference
    reference = torch_reference.build("resnet-20")
    assert sum(p.numel() for p in reference.parameters()) == models.get("resnet-20").num_params()


MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


@pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
def test_the_trace_has_every_leaf_of_a_residual_network(tmp_path):
    trace = tmp_path / "t.json"
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "dptrain.cli", "train",
                          "--model", "resnet-small", "--dataset", "synthetic:1x8x8:200",
                          "--max-steps", "3", "--trace", str(trace), "--trace-steps", "2",
                          "--bucket-mb", "0.02", "--sync", "overlap", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    model = models.get("resnet-small", input_shape=(1, 8, 8))
    leaves = set(range(len(model.layers)))
    for rank in (0, 1):
        for step in (1, 2):
            at = [e for e in events if e["pid"] == rank and e["args"]["step"] == step]
            assert {e["args"]["layer"] for e in at if e["cat"] == "forward"} == leaves
            assert {e["args"]["layer"] for e in at if e["cat"] == "backward"} == leaves
            comm = [e for e in at if e["cat"] == "comm"]
            assert len(comm) > 1 and sorted(i for e in comm for i in e["args"]["layers"]) == \
                sorted(i for i in leaves if model.layers[i].params)


def test_saved_weights_of_a_residual_network_load_for_eval(tmp_path):
    weights = tmp_path / "w.npz"
    t = run(max_steps=3, save_weights=str(weights))
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "eval", "--model", "resnet-small",
                          "--weights", str(weights), "--dataset", RESNET["dataset"], "--json"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert 0 <= json.loads(res.stdout.splitlines()[-1])["accuracy"] <= 1
    with np.load(weights) as saved:
        assert set(saved.files) - {"meta"} == set(t.model.state_dict())   # meta: the model record
