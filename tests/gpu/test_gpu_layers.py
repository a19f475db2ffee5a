"""NumPy against CuPy: every layer, and a few training steps. Skipped without a GPU.

Run on a GPU machine with `scripts/gpu_check.sh` (or `pytest -m gpu tests/gpu`).
"""
import numpy as np
import pytest

from dptrain import backend, models, nn, optim

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")]

LAYERS = [
    (lambda: nn.Conv2D(3, 4, 3, stride=2, padding=1), (2, 3, 9, 8)),
    (lambda: nn.Conv2D(2, 3, 5, padding=2), (3, 2, 7, 6)),
    (lambda: nn.Dense(7, 5), (4, 7)),
    (lambda: nn.MaxPool2D(2), (2, 3, 8, 8)),
    (lambda: nn.MaxPool2D(3, stride=1, padding=1), (2, 2, 5, 5)),
    (lambda: nn.AvgPool2D(2), (2, 3, 6, 6)),
    (lambda: nn.GlobalAvgPool(), (2, 3, 4, 4)),
    (lambda: nn.BatchNorm(3), (4, 3, 5, 5)),
    (lambda: nn.ReLU(), (4, 6)), (lambda: nn.LeakyReLU(0.1), (4, 6)), (lambda: nn.ELU(), (4, 6)),
    (lambda: nn.Sigmoid(), (4, 6)), (lambda: nn.Tanh(), (4, 6)), (lambda: nn.Softplus(), (4, 6)),
    (lambda: nn.PReLU(3), (2, 3, 4, 4)), (lambda: nn.Flatten(), (2, 3, 4, 4)),
]


def run_layer(make, shape, device, dtype, seed=0):
    backend.use_device(device)
    backend.set_dtype(dtype)
    try:
        layer = make()
        layer.initialize(np.random.default_rng(seed))
        rng = np.random.default_rng(seed + 1)
        x = backend.xp.asarray(rng.standard_normal(shape), dtype=backend.dtype)
        y = layer.forward(x, True)
        dy = backend.xp.asarray(rng.standard_normal(y.shape), dtype=backend.dtype)
        layer.needs_input_grad = True
        dx = layer.backward(dy)
        return (backend.to_numpy(y), backend.to_numpy(dx),
                {k: backend.to_numpy(v) for k, v in layer.grads.items()})
    finally:
        backend.use_device("cpu")
        backend.set_dtype("float32")


@pytest.fixture(params=["all", "generic"])
def kernels(request):
    """CuPy through every CUDA kernel family and through the generic array code."""
    backend.set_kernels(request.param)
    yield request.param
    backend.set_kernels("auto")


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("make,shape", LAYERS)
def test_layer_numpy_vs_cupy(make, shape, dtype, rtol, kernels):
    cpu, gpu = run_layer(make, shape, "cpu", dtype), run_layer(make, shape, "gpu", dtype)
    atol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(gpu[0], cpu[0], rtol=rtol, atol=atol)
    np.testing.assert_allclose(gpu[1], cpu[1], rtol=rtol, atol=atol)
    for k in cpu[2]:
        np.testing.assert_allclose(gpu[2][k], cpu[2][k], rtol=rtol, atol=atol, err_msg=k)


def train_steps(device, steps=10):
    backend.use_device(device)
    backend.set_dtype("float64")
    try:
        model = models.get("thesis-cnn", seed=3)
        opt, loss = optim.get("adam", model), nn.SoftmaxCrossEntropy()
        rng = np.random.default_rng(4)
        for step in range(steps):
            x = backend.xp.asarray(rng.random((8, 1, 28, 28)))
            y = backend.xp.asarray(rng.integers(0, 10, 8))
            ctx = nn.BatchContext(np.arange(step * 8, step * 8 + 8), step)
            loss.forward(model.forward(x, True, ctx), y)
            model.backward(loss.backward())
            opt.step()
        return model.state_dict()
    finally:
        backend.use_device("cpu")
        backend.set_dtype("float32")


def test_ten_training_steps_cpu_vs_gpu(kernels):
    cpu, gpu = train_steps("cpu"), train_steps("gpu")
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-8, atol=1e-10, err_msg=k)


def test_trainer_on_the_gpu_prefetches_and_matches_the_cpu():
    """The whole trainer: inputs through pinned buffers and the copy stream (every step but
    an epoch's first prefetched), results read late; parameters as on the CPU."""
    from dptrain.train import TrainConfig, Trainer
    runs = {}
    for device in ("cpu", "gpu"):
        cfg = TrainConfig(model="thesis-cnn", dataset="synthetic:1x28x28:200", dtype="float64",
                          max_steps=12, epochs=2, batch_size=16, device=device, quiet=True,
                          augment="flip")
        t = Trainer(cfg)
        t.run()
        backend.use_device("cpu")
        backend.set_dtype("float32")
        runs[device] = t
    gpu = runs["gpu"]
    assert gpu.inputs.misses == 0 and gpu.inputs.hits >= 12 - 2
    for (k, a), (_, b) in zip(runs["cpu"].model.named_params(), gpu.model.named_params()):
        np.testing.assert_allclose(backend.to_numpy(b), a, rtol=1e-8, atol=1e-10, err_msg=k)


def test_host_copy_reads_device_values_after_their_event():
    backend.use_device("gpu")
    try:
        a = backend.xp.arange(5, dtype=backend.xp.float64) * 2
        copy = backend.HostCopy(a.sum())
        assert float(copy.value()) == 20.0 and copy.ready
        stacked = backend.stack_scalars([a.sum(), 3])
        assert type(stacked).__module__.startswith("cupy")
    finally:
        backend.use_device("cpu")
