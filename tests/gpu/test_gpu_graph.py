"""--cuda-graph on against off on a real GPU: the same parameters bit for bit, steps really
replayed from the graph, and no memory taken by the graph after its capture. Skipped
without a GPU (the CPU tests use tests/cuda_graph_standin.py instead).

Run on a GPU machine with `scripts/gpu_check.sh` (or `pytest -m gpu tests/gpu/test_gpu_graph.py`).
"""
import numpy as np
import pytest

from dptrain import backend

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")]


def train(graph: str, **kw):
    from dptrain.train import TrainConfig, Trainer
    # 208 training samples in batches of 32: 6 full steps and a last one of 16 per epoch
    cfg = dict(model="thesis-cnn", dataset="synthetic:1x28x28:260", epochs=2, batch_size=32,
               device="gpu", quiet=True, lr_schedule="cosine", cuda_graph=graph)
    cfg.update(kw)
    t = Trainer(TrainConfig(**cfg))
    try:
        pools = []
        if graph == "on":                  # the private pool's size after each step
            step = t.train_step

            def counted(*a, **k):
                out = step(*a, **k)
                if t.graph.pool is not None:
                    pools.append(t.graph.pool.total_bytes())
                return out
            t.train_step = counted
        t.run()
        backend.synchronize()
        return t, pools
    finally:
        backend.use_device("cpu")
        backend.set_dtype("float32")


@pytest.mark.parametrize("optimizer", ["adadelta", "momentum"])
def test_graph_training_is_bitwise_eager_training(optimizer, capfd):
    eager, _ = train("off", optimizer=optimizer)
    graphed, pools = train("on", optimizer=optimizer)
    g = graphed.graph
    assert g.disabled is None, g.disabled
    # 14 steps: the warm-up and the two partial batches eager, the capture and 10 replays
    assert g.eager_steps == 1 + 2 and g.launches == 14 - 3
    a, b = eager.model.state_dict(), graphed.model.state_dict()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert "step captured with a batch of 32" in capfd.readouterr().err
    assert len(set(pools)) == 1, pools            # replays take no memory of their own


def test_adam_runs_eagerly_and_says_why(capfd):
    graphed, _ = train("on", optimizer="adam", epochs=1)
    assert "adam's bias correction" in graphed.graph.disabled
    assert "every step runs eagerly" in capfd.readouterr().err
