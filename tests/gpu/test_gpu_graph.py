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


@pytest.mark.parametrize("optimizer", ["adadelta", "momentum", "adam", "adamax"])
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


def test_adam_without_the_fused_kernels_runs_eagerly_and_says_why(capfd):
    # with the fused optimiser kernels Adam's bias corrections are read on the device (and it
    # is captured, above); the array expressions of --kernels generic take them from the host
    before = backend.kernels
    backend.set_kernels("generic")
    try:
        graphed, _ = train("on", optimizer="adam", epochs=1)
    finally:
        backend.set_kernels(before)
    assert "adam's bias correction" in (graphed.graph.disabled or ""), graphed.graph.disabled
    assert "every step runs eagerly" in capfd.readouterr().err


def test_the_capture_copies_no_host_data(monkeypatch):
    """Nothing in the captured step makes a device array from host data: CuPy stages such a
    copy in a pinned buffer that it frees after an event recorded in the capture, so the
    graph would copy from memory it does not own (e.g. xp.asarray([count]) in --sync-bn)."""
    import threading

    import cupy

    from dptrain.train import graph_capture
    staged, real = [], graph_capture.CupyCapture.capture

    def capture(self, fn, pool, comms=()):
        me, pinned = threading.get_ident(), cupy.get_default_pinned_memory_pool()

        def counting(size):
            if threading.get_ident() == me:       # not a prefetching thread's staging
                staged.append(size)
            return pinned.malloc(size)
        cupy.cuda.set_pinned_memory_allocator(counting)
        try:
            return real(self, fn, pool, comms)
        finally:
            cupy.cuda.set_pinned_memory_allocator(pinned.malloc)
    monkeypatch.setattr(graph_capture.CupyCapture, "capture", capture)
    graphed, _ = train("on", optimizer="momentum", epochs=1, sync_bn=True)
    assert graphed.graph.disabled is None, graphed.graph.disabled
    assert graphed.graph.launches > 0 and staged == [], staged
