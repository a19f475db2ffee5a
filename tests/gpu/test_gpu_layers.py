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


@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("make,shape", LAYERS)
def test_layer_numpy_vs_cupy(make, shape, dtype, rtol):
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


def test_ten_training_steps_cpu_vs_gpu():
    cpu, gpu = train_steps("cpu"), train_steps("gpu")
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-8, atol=1e-10, err_msg=k)
