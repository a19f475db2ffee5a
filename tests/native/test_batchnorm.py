"""The compiled plain BatchNorm (native/src/batchnorm.c through nn/batchnorm_native.py)
against the array code and finite differences."""
import numpy as np
import pytest

from dptrain import backend, native, nn
from dptrain.nn import batchnorm_native, fused_cpu
from test_batchnorm_pool import assert_same_batch_norm

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason="compiled CPU kernels not built (make builds them)")


def run(x, dy, kernels, sync=None):
    bn = nn.BatchNorm(x.shape[1])
    bn.backend = backend.Backend(np, x.dtype.type, kernels)
    bn.initialize(np.random.default_rng(1))
    bn.params["gamma"][...] = np.linspace(-1.2, 1.5, x.shape[1])
    bn.params["beta"][...] = np.linspace(-0.3, 0.4, x.shape[1])
    bn.sync = sync
    y = bn.forward(x, True)
    compiled = bn._plain is not None
    dx = bn.backward(dy)
    return compiled, y, dx, bn.grads["gamma"].copy(), bn.grads["beta"].copy(), bn.buffers


@pytest.mark.parametrize("shape", [(3, 5, 7, 6), (2, 3, 1, 1), (4, 2, 17, 3)])
def test_float32_matches_the_array_code(rng, shape):
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    dy = rng.standard_normal(shape).astype(np.float32)
    ours, theirs = (run(x, dy, kernels) for kernels in ("auto", "generic"))
    assert ours[0] and not theirs[0]
    assert_same_batch_norm(ours[1:], theirs[1:], y_atol=1e-5)


def test_nan_propagates_and_sync_posts_the_same_reductions(rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    x[1, 1, 2, 3] = np.nan
    dy = rng.standard_normal(x.shape).astype(np.float32)
    posted = {k: [] for k in ("auto", "generic")}
    for kernels, log in posted.items():
        compiled, y, dx, g, b, _ = run(x, dy, kernels,
                                       lambda a, log=log: log.append((a.shape, a.dtype)) or a)
        assert compiled == (kernels == "auto")
        assert np.isnan(y[:, 1]).all() and np.isfinite(y[:, [0, 2]]).all()
        assert np.isnan(dx[:, 1]).all() and np.isfinite(dx[:, [0, 2]]).all()
    assert posted["auto"] == posted["generic"] and len(posted["auto"]) == 3


def test_generic_and_dense_take_the_array_code(rng):
    x = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    assert not run(x, x, "generic")[0] and not run(x, x, "cpu_conv")[0]
    assert run(x, x, "cpu_batchnorm")[0]
    dense = rng.standard_normal((4, 3)).astype(np.float32)
    assert not run(dense, dense, "auto")[0]


def test_float64_gradient(float64, rng, monkeypatch):
    from gradcheck import check_layer
    monkeypatch.setattr(native, "DTYPES", (np.float32, np.float64))
    bn = nn.BatchNorm(3)
    bn.initialize(rng)
    bn.params["gamma"][...] = [-0.8, 0.6, 1.4]
    bn.params["beta"][...] = [0.3, -0.2, 0.1]
    x = rng.standard_normal((3, 3, 5, 4)) * 2 + 1
    bn.forward(x, True)
    assert bn._plain is not None and batchnorm_native.runs(x, None) and fused_cpu
    check_layer(bn, x, rng)


def run_linked_relu(x, dy, kernels):
    from dptrain.nn.fusion import link_bn_relu_pool
    b = backend.Backend(np, x.dtype.type, kernels)
    layers = [nn.BatchNorm(x.shape[1]), nn.ReLU(), nn.Conv2D(x.shape[1], 2, 1)]
    for layer in layers:
        layer.backend = b
        layer.initialize(np.random.default_rng(1))
    layers[0].params["gamma"][...] = np.linspace(-1.2, 1.5, x.shape[1])
    assert link_bn_relu_pool(layers) == 0 and layers[0].fused_relu is layers[1]
    y = x
    for layer in layers[:2]:
        y = layer.forward(y, True)
    passed = layers[1]._passing
    dx = layers[1].backward(dy)
    dx = layers[0].backward(dx)
    return passed, y, dx, layers[0].grads["gamma"].copy()


def test_linked_relu_matches_the_two_layers(rng):
    """BatchNorm -> ReLU linked by nn/fusion.py: the compiled kernels run both (the ReLU
    passes through), the array code runs them one by one; a NaN channel stays NaN."""
    x = (rng.standard_normal((3, 4, 5, 7)) + 0.5).astype(np.float32)
    x[2, 3, 1, 1] = np.nan
    dy = rng.standard_normal(x.shape).astype(np.float32)
    (p1, y1, dx1, g1), (p0, y0, dx0, g0) = (run_linked_relu(x, dy, k) for k in ("auto", "generic"))
    assert p1 and not p0
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-5)
    assert np.isnan(dx1[:, 3]).all() and np.isfinite(dx1[:, :3]).all()


def test_float64_gradient_with_linked_relu(float64, rng, monkeypatch):
    from gradcheck import check_layer
    from dptrain.nn.fusion import link_bn_relu_pool
    monkeypatch.setattr(native, "DTYPES", (np.float32, np.float64))
    bn, relu = nn.BatchNorm(3), nn.ReLU()
    bn.initialize(rng)
    link_bn_relu_pool([bn, relu])
    bn.params["gamma"][...] = [-0.8, 0.6, 1.4]
    bn.params["beta"][...] = [0.3, -0.2, 0.1]
    x = rng.standard_normal((3, 3, 5, 4)) * 2 + 1
    y = bn.forward(x, True)
    assert relu.bypass and (y >= 0).all() and (y == 0).any()
    check_layer(bn, x, rng)
