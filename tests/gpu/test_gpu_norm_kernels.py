"""The batch-norm kernels on a GPU (one-pass statistics and sums, BatchNorm -> ReLU ->
MaxPool2D fused) against NumPy. Skipped without a GPU; tests/nn checks the same source
compiled for the CPU.
"""
import numpy as np
import pytest

from dptrain import backend, nn
from dptrain.models.sequential import Sequential

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")]


def run_chain(device, dtype, shape, pool, mean=0.0, seed=0):
    """Output, input gradient and gradients of BatchNorm -> ReLU -> MaxPool2D as a model
    builds them (linked, so fused where the kernels are on)."""
    backend.use_device(device)
    backend.set_dtype(dtype)
    try:
        c = shape[1]
        model = Sequential([nn.BatchNorm(c), nn.ReLU(), pool()], shape[1:], seed=seed)
        model.layers[0].params["gamma"][...] = backend.xp.linspace(-1.5, 2, c)
        for layer in model.layers:
            layer.needs_input_grad = True
        rng = np.random.default_rng(seed + 1)
        x = backend.xp.asarray(rng.standard_normal(shape) + mean, dtype=backend.dtype)
        y = model.forward(x, True)
        dy = backend.xp.asarray(rng.standard_normal(y.shape), dtype=backend.dtype)
        dx = model.backward(dy)
        return [backend.to_numpy(a) for a in (y, dx, *model.layers[0].grads.values(),
                                               *model.layers[0].buffers.values())]
    finally:
        backend.use_device("cpu")
        backend.set_dtype("float32")


@pytest.mark.parametrize("kernels", ["all", "batchnorm", "bn_relu_pool", "generic"])
@pytest.mark.parametrize("dtype,rtol,atol,mean", [("float64", 1e-10, 1e-12, 0.0),
                                                  ("float32", 5e-4, 5e-4, 1e3)])
@pytest.mark.parametrize("shape,pool", [((8, 32, 24, 24), lambda: nn.MaxPool2D(2)),
                                        ((3, 3, 9, 7), lambda: nn.MaxPool2D(3, stride=2, padding=1))])
def test_batch_norm_relu_pool_numpy_vs_cupy(kernels, dtype, rtol, atol, mean, shape, pool):
    backend.set_kernels(kernels)
    try:
        cpu = run_chain("cpu", dtype, shape, pool, mean)
        gpu = run_chain("gpu", dtype, shape, pool, mean)
    finally:
        backend.set_kernels("auto")
    # float32 data of mean 1e3 (std 1): x itself is known to ~6e-5, which bounds every path
    for name, a, b in zip(["y", "dx", "gamma", "beta", "running_mean", "running_var"], cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=name)
