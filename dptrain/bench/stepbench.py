"""Time dptrain's single-process training step, and the machine's sgemm peak, in this process."""
from __future__ import annotations

import resource
import statistics
import time

import numpy as np

from .. import backend, models, nn, optim


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0     # KiB on Linux


def sgemm_gflops(n: int = 1024, repeats: int = 10) -> float:
    """Best-of float32 GEMM rate with the current thread limit: the arithmetic roof."""
    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    c = np.empty((n, n), dtype=np.float32)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2.0 * n ** 3 / best / 1e9


def random_batches(model, batch: int, seed: int = 0, count: int = 8):
    """``count`` batches of random inputs and labels on the device in use, in the model's
    dtype: what the step benchmarks cycle through (as torch_cnn.py does)."""
    rng = np.random.default_rng(seed + 1)
    xp = backend.xp
    shape = (batch,) + model.input_shape
    xs = [xp.asarray(rng.random(shape, dtype=np.float32), dtype=model.dtype) for _ in range(count)]
    ys = [xp.asarray(rng.integers(0, 10, batch)) for _ in range(count)]
    return xs, ys


def time_training_step(model_name: str, batch: int, steps: int, warmup: int,
                       optimizer: str = "adadelta", seed: int = 0, graph: bool = False,
                       capture=None, input_shape=None) -> dict:
    """Median wall time of forward + loss + backward + update on random data (as torch_cnn.py),
    on the device in use (backend.use_device). ``graph``: each step through a CUDA graph
    (graph_bench.py; ``capture``: its capture backend, the GPU's by default). ``input_shape``:
    per sample, for a model of the user's own (models/reference.py)."""
    model = models.get(model_name, input_shape, seed=seed)
    opt = optim.get(optimizer, model)
    loss = nn.SoftmaxCrossEntropy()
    xs, ys = random_batches(model, batch, seed)
    graphed = None
    if graph:
        from .graph_bench import GraphedSteps
        graphed = GraphedSteps(model, opt, loss, batch, capture)
    times = []
    for i in range(warmup + steps):
        x, y = xs[i % 8], ys[i % 8]
        t0 = time.perf_counter()
        if graphed is not None:
            graphed.step(x, y, i)
        else:
            logits = model.forward(x, train=True)
            loss.forward(logits, y)
            model.backward(loss.backward())
            opt.step()
        backend.synchronize()   # the step's kernels are done (GPU); nothing to wait for on a CPU
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    summary = model.summary(batch_size=batch)
    out = {"median_step_s": statistics.median(times), "min_step_s": min(times),
           "training_flops_per_image": summary.training_flops}
    if graphed is not None:
        out["cuda_graph"] = graphed.describe()
    return out
