"""Trace schema: every rank, every layer, every bucket; posted before completed; bytes match."""
import json
import os
import subprocess
import sys

import pytest

from dptrain import models

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


@pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_trace_has_every_rank_layer_and_bucket(tmp_path, sync):
    trace, png = tmp_path / "t.json", tmp_path / "t.png"
    res = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "dptrain.cli", "train", "--model",
                          "thesis-cnn", "--dataset", "synthetic:1x28x28:400", "--max-steps", "5",
                          "--trace", str(trace), "--trace-steps", "3", "--bucket-mb", "0.2",
                          "--sync", sync, "--quiet"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    events = [e for e in json.loads(trace.read_text())["traceEvents"] if e["ph"] == "X"]
    model = models.get("thesis-cnn")
    n_layers = len(model.layers)
    param_layers = {i for i, layer in enumerate(model.layers) if layer.params}
    for rank in (0, 1):
        mine = [e for e in events if e["pid"] == rank]
        for step in (1, 2, 3):
            at = [e for e in mine if e["args"]["step"] == step]
            assert {e["args"]["layer"] for e in at if e["cat"] == "forward"} == set(range(n_layers))
            # backprop stops below the first layer with parameters (layer 0 here)
            assert {e["args"]["layer"] for e in at if e["cat"] == "backward"} == set(range(n_layers))
            # overlap updates a bucket's layers in one pass: one span naming them all
            updated = [j for e in at if e["cat"] == "update" for j in e["args"].get("layers", [e["args"]["layer"]])]
            assert sorted(updated) == sorted(param_layers)
            comm = [e for e in at if e["cat"] == "comm"]
            assert sorted(e["args"]["bucket"] for e in comm) == [0, 1]
            if sync == "overlap":                   # one update pass per bucket
                assert sorted(sorted(e["args"]["layers"]) for e in at if e["cat"] == "update") == \
                    sorted(sorted(e["args"]["layers"]) for e in comm)
            for e in comm:
                assert e["args"]["posted_us"] <= e["args"]["completed_us"]
                grads = sum(p.size for i in e["args"]["layers"] for p in model.layers[i].params.values())
                assert e["args"]["bytes"] == 4 * grads                    # float32 gradients
        assert {e["args"]["step"] for e in mine} == {1, 2, 3}
    assert sum(e["args"]["bytes"] for e in events if e["cat"] == "comm") == 2 * 3 * 4 * model.num_params()
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "plot", "--trace", str(trace), "-o",
                          str(png)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG"
