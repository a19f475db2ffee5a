"""dptrain bench --cuda-graph: the benchmark's step through a CUDA graph, on the CPU through
the capture stand-in (tests/cuda_graph_standin.py); on the CPU itself the flag is refused."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

from cuda_graph_standin import StandinCapture  # noqa: E402
from dptrain.bench import graph_bench  # noqa: E402
from dptrain.bench.stepbench import time_training_step  # noqa: E402
from test_cli import assert_usage_error, dptrain  # noqa: E402


def test_the_timed_steps_are_replays(monkeypatch):
    made = []
    init = graph_bench.GraphedSteps.__init__

    def keep(self, *a, **k):
        init(self, *a, **k)
        made.append(self)
    monkeypatch.setattr(graph_bench.GraphedSteps, "__init__", keep)
    capture = StandinCapture(lambda: [made[0].dp, made[0].opt, made[0].loss, made[0].dp.model],
                             monkeypatch)
    res = time_training_step("thesis-cnn", 8, steps=3, warmup=2, graph=True, capture=capture)
    assert res["cuda_graph"] == "replayed" and res["median_step_s"] > 0
    g = made[0].graph
    assert capture.captures == 1 and g.eager_steps == 1 and g.launches == 4   # 2 + 3 steps


def test_without_a_gpu_the_graph_steps_say_why_they_ran_eagerly():
    res = time_training_step("mlp", 8, steps=2, warmup=1, graph=True)
    assert res["cuda_graph"] == "eager: no GPU: CUDA graphs need CuPy on a GPU"


@pytest.mark.parametrize("value,named", [("on", "needs --device gpu"), ("off,fast", "--cuda-graph")])
def test_the_sweep_refuses_a_graph_on_the_cpu_and_unknown_values(value, named):
    from dptrain import backend
    if backend.gpu_available() and value == "on":
        pytest.skip("this machine has a GPU")
    assert_usage_error(dptrain("bench", "--no-torch", "--batch-sizes", "8", "--cuda-graph", value),
                       named)
