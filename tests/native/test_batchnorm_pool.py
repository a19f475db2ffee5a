"""The compiled BatchNorm -> ReLU -> MaxPool2D run (native/src/batchnorm_pool.c through
nn/fused_native.py) against the array code (nn/fused_cpu.py) and finite differences."""
import numpy as np
import pytest

from dptrain import backend, native, nn
from dptrain.nn import fused_cpu, fused_native
from dptrain.nn.fusion import link_bn_relu_pool

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason="compiled CPU kernels not built (make builds them)")


def run_linked(x, dy, k, kernels, gamma):
    """Forward and backward of a linked BatchNorm -> ReLU -> MaxPool2D(k) on ``kernels``."""
    b = backend.Backend(np, x.dtype.type, kernels)
    layers = [nn.BatchNorm(x.shape[1]), nn.ReLU(), nn.MaxPool2D(k)]
    for layer in layers:
        layer.backend = b
    layers[0].initialize(np.random.default_rng(1))
    layers[0].params["gamma"][...] = gamma
    layers[0].params["beta"][...] = np.linspace(-0.3, 0.4, x.shape[1])
    assert link_bn_relu_pool(layers) == 1
    y = x
    for layer in layers:
        y = layer.forward(y, True)
    impl = layers[0]._cpu_impl
    dx = dy
    for layer in reversed(layers):
        dx = layer.backward(dx)
    bn = layers[0]
    return impl, y, dx, bn.grads["gamma"].copy(), bn.grads["beta"].copy(), bn.buffers


@pytest.mark.parametrize("shape,k", [((3, 5, 6, 8), 2), ((2, 3, 9, 6), 3), ((1, 2, 4, 4), 4)])
def test_float32_matches_the_array_code(rng, shape, k):
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    x[0, -1, :k, :k] = 9.0           # tied window maxima: the first one gets the gradient
    x[0, 0, :k, :k] = -9.0           # (channel 0's gamma is negative: its minima)
    dy = rng.standard_normal((shape[0], shape[1], shape[2] // k, shape[3] // k)).astype(np.float32)
    gamma = np.linspace(-1.2, 1.5, shape[1])
    gamma[len(gamma) // 2] = 0.0
    ran = [run_linked(x, dy, k, kernels, gamma) for kernels in ("auto", "generic")]
    assert ran[0][0] is fused_native and ran[1][0] is fused_cpu
    assert_same_batch_norm(ran[0][1:], ran[1][1:], y_atol=1e-6)   # sums in another order


def assert_same_batch_norm(ours, theirs, y_atol):
    """(y, dx, dgamma, dbeta, buffers) of the compiled path against the array code's, within
    float32 tolerance (test_batchnorm.py uses it too)."""
    (y1, dx1, g1, b1, buf1), (y0, dx0, g0, b0, buf0) = ours, theirs
    np.testing.assert_allclose(y1, y0, rtol=1e-5, atol=y_atol)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g1, g0, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b1, b0, rtol=1e-4, atol=1e-5)
    for name in buf0:
        np.testing.assert_allclose(buf1[name], buf0[name], rtol=1e-5, atol=1e-6)


def test_nan_propagates(rng):
    x = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    x[1, 2, 3, 1] = np.nan
    dy = rng.standard_normal((2, 3, 2, 2)).astype(np.float32)
    impl, y, dx, g, b, _ = run_linked(x, dy, 2, "auto", [1.0, -1.0, 0.5])
    assert impl is fused_native
    assert np.isnan(y[:, 2]).all() and np.isfinite(y[:, :2]).all()
    assert np.isnan(dx[:, 2]).all() and np.isfinite(dx[:, :2]).all()
    assert np.isnan(g[2]) and np.isfinite(g[:2]).all()


def test_generic_kernels_take_the_array_code(rng):
    x = rng.standard_normal((2, 2, 4, 4)).astype(np.float32)
    dy = rng.standard_normal((2, 2, 2, 2)).astype(np.float32)
    assert run_linked(x, dy, 2, "generic", 1.0)[0] is fused_cpu
    assert run_linked(x, dy, 2, "cpu_conv", 1.0)[0] is fused_cpu
    assert run_linked(x, dy, 2, "cpu_batchnorm", 1.0)[0] is fused_native


@pytest.fixture
def compiled_float64(float64, monkeypatch):
    from dptrain.nn import conv_direct
    for module in (native, fused_cpu, conv_direct):
        monkeypatch.setattr(module, "DTYPES", (np.float32, np.float64))


def test_float64_layer_gradient(compiled_float64, rng):
    from gradcheck import check_layer
    bn = nn.BatchNorm(3)
    bn.initialize(rng)
    assert link_bn_relu_pool([bn, nn.ReLU(), nn.MaxPool2D(3)]) == 1
    bn.params["gamma"][...] = [-0.8, 0.6, 1.4]
    bn.params["beta"][...] = [0.3, -0.2, 0.1]
    x = rng.standard_normal((3, 3, 6, 9)) * 2 + 1
    bn.forward(x, True)
    assert bn._cpu_impl is fused_native
    check_layer(bn, x, rng)


def test_float64_whole_model_gradient_blocked(compiled_float64, rng):
    """thesis-cnn: its first convolution hands the compiled run its output window offset
    first, the second run takes NCHW; every parameter's gradient against differences."""
    from dptrain import models
    from gradcheck import check_model
    model = models.get("thesis-cnn", input_shape=(1, 16, 16), seed=3)

    def paths(model):
        bns = [layer for layer in model.layers if isinstance(layer, nn.BatchNorm)]
        assert [bn._cpu_impl for bn in bns] == [fused_native] * 2
        assert model.layers[1]._blocked is not None
    check_model(model, rng.standard_normal((3, 1, 16, 16)), rng.integers(0, 10, 3), rng, paths)


def test_sync_posts_the_same_reductions(rng):
    """With --sync-bn every rank posts the same reductions whichever path computes its local
    part (a rank may run the compiled kernels while another, empty, runs the array code)."""
    x = rng.standard_normal((3, 4, 6, 6)).astype(np.float32)
    dy = rng.standard_normal((3, 4, 3, 3)).astype(np.float32)
    posted, results = {}, {}
    for kernels in ("auto", "generic"):
        b = backend.Backend(np, np.float32, kernels)
        layers = [nn.BatchNorm(4), nn.ReLU(), nn.MaxPool2D(2)]
        for layer in layers:
            layer.backend = b
        layers[0].initialize(np.random.default_rng(1))
        link_bn_relu_pool(layers)
        log = posted[kernels] = []
        layers[0].sync = lambda a, log=log: log.append((a.shape, a.dtype)) or a * 2
        y = x
        for layer in layers:
            y = layer.forward(y, True)
        dx = dy
        for layer in reversed(layers):
            dx = layer.backward(dx)
        results[kernels] = (layers[0]._cpu_impl, y, dx)
    assert results["auto"][0] is fused_native and posted["auto"] == posted["generic"]
    assert len(posted["auto"]) == 3
    np.testing.assert_allclose(results["auto"][1], results["generic"][1], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(results["auto"][2], results["generic"][2], rtol=1e-4, atol=1e-5)
