"""The fused optimiser kernels (optim/fused.py) on a GPU against NumPy. Skipped without a GPU.

On the CPU the same source is checked through g++ (tests/optim/test_fused_kernels.py); here
NVRTC compiles it, and FMA contraction may move the last bit, hence the tolerances.
"""
import numpy as np
import pytest

from dptrain import backend, models, optim

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")]

RULES = ["sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adadelta", "adam", "adamax"]


def updated_params(device, dtype, name, weight_decay, kernels, steps=5):
    backend.use_device(device)
    backend.set_dtype(dtype)
    before = backend.kernels
    backend.set_kernels(kernels)
    try:
        model = models.get("thesis-cnn", seed=2)
        opt = optim.get(name, model, lr=0.01, weight_decay=weight_decay)
        rng = np.random.default_rng(7)
        for _ in range(steps):
            for _, g in model.named_grads():
                g[...] = backend.xp.asarray(rng.standard_normal(g.shape), dtype=g.dtype)
            opt.step()
        return {k: backend.to_numpy(v) for k, v in model.named_params()}
    finally:
        backend.set_kernels(before)
        backend.use_device("cpu")
        backend.set_dtype("float32")


@pytest.mark.parametrize("kernels", ["all", "generic"])
@pytest.mark.parametrize("dtype,rtol", [("float64", 1e-10), ("float32", 1e-5)])
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("name", RULES)
def test_fused_update_on_the_gpu_matches_numpy(name, weight_decay, dtype, rtol, kernels):
    cpu = updated_params("cpu", dtype, name, weight_decay, "auto")
    gpu = updated_params("gpu", dtype, name, weight_decay, kernels)
    atol = 1e-12 if dtype == "float64" else 1e-6
    for k in cpu:
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=rtol, atol=atol, err_msg=k)
