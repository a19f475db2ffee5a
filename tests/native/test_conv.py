"""The compiled layout kernels of the channels-last convolution (nn/conv_native.py,
native/src/conv_layout.c, family "cpu_conv") against the NumPy path and finite differences."""
import numpy as np
import pytest

from dptrain import backend, native, nn
from dptrain.nn import conv_direct, conv_native, fused_cpu
from gradcheck import check_layer

ONLY_CONV = "cpu_conv"     # the 5x5 Winograd (cpu_winograd) would take conv2-like layers
WITH_BN = "cpu_conv,cpu_batchnorm"

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason="compiled kernels not built (make native builds them)")

CASES = [
    # (c_in, c_out, kernel, stride, padding, input N, H, W)
    (32, 32, 5, 1, 0, (3, 12, 12)),    # thesis-cnn's second convolution, odd batch
    (5, 3, 3, 2, 1, (2, 7, 8)),        # stride 2, padding 1, odd sizes
    (6, 4, (3, 2), 1, 2, (1, 6, 9)),   # rectangular kernel, padding wider than needed
    # few input channels: conv_direct's NCHW columns, compiled, bias row in the GEMM
    (1, 32, 5, 1, 0, (3, 28, 28)),     # thesis-cnn's first convolution
    (2, 4, 5, 1, 2, (3, 7, 6)),        # padding 2, non-square
    (3, 2, 3, 2, 1, (2, 8, 7)),        # stride 2
]


def layer_and_input(rng, c_in, c_out, k, stride, pad, nhw, dtype):
    n, h, w = nhw
    layer = nn.Conv2D(c_in, c_out, k, stride=stride, padding=pad)
    layer.initialize(rng)
    for p in layer.params.values():
        p[...] = rng.standard_normal(p.shape)          # a nonzero bias too
    layer.params = {k: v.astype(dtype) for k, v in layer.params.items()}
    layer.grads = {k: np.zeros_like(v) for k, v in layer.params.items()}
    layer.needs_input_grad = True
    return layer, rng.standard_normal((n, c_in, h, w)).astype(dtype)


def run(layer, x, dy_seed, kernels):
    old, backend.kernels = backend.kernels, kernels
    try:
        y = layer.forward(x, True)
        taken = layer._native
        dy = np.random.default_rng(dy_seed).standard_normal(y.shape).astype(x.dtype)
        dx = layer.backward(dy)
        return y, dx, {k: g.copy() for k, g in layer.grads.items()}, taken
    finally:
        backend.kernels = old


@pytest.mark.parametrize("column_bytes", [1, 1 << 30])    # one sample per chunk; one chunk
@pytest.mark.parametrize("c_in,c_out,k,stride,pad,nhw", CASES)
def test_float32_matches_numpy_path(rng, monkeypatch, c_in, c_out, k, stride, pad, nhw,
                                    column_bytes):
    monkeypatch.setattr(conv_native, "COLUMN_BYTES", column_bytes)
    layer, x = layer_and_input(rng, c_in, c_out, k, stride, pad, nhw, np.float32)
    y, dx, grads, taken = run(layer, x, 1, ONLY_CONV)
    y0, dx0, grads0, taken0 = run(layer, x, 1, "generic")
    assert taken and not taken0
    scale = lambda a: 1e-4 * max(1.0, float(np.abs(a).max()))   # noqa: E731
    np.testing.assert_allclose(y, y0, rtol=0, atol=scale(y0))
    np.testing.assert_allclose(dx, dx0, rtol=0, atol=scale(dx0))
    for name in grads0:
        np.testing.assert_allclose(grads[name], grads0[name], rtol=0, atol=scale(grads0[name]))


def test_nan_input_propagates(rng):
    layer, x = layer_and_input(rng, 8, 4, 3, 1, 1, (2, 6, 6), np.float32)
    x[1, 3, 2, 4] = np.nan
    y, dx, grads, taken = run(layer, x, 2, ONLY_CONV)
    assert taken
    assert np.isnan(y[1]).any() and not np.isnan(y[0]).any()
    assert np.isnan(grads["W"]).any()


@pytest.mark.parametrize("c_in,c_out,k,stride,pad,nhw", CASES[1:])
def test_float64_gradients_against_finite_differences(rng, monkeypatch, c_in, c_out, k,
                                                      stride, pad, nhw):
    monkeypatch.setattr(native, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_direct, "DTYPES", (np.float32, np.float64))
    layer, x = layer_and_input(rng, c_in, c_out, k, stride, pad, nhw, np.float64)
    layer.forward(x, True)
    assert layer._native
    check_layer(layer, x, rng)


def test_generic_kernels_and_native_off_keep_the_numpy_path(rng, monkeypatch):
    layer, x = layer_and_input(rng, 8, 4, 3, 1, 0, (2, 6, 6), np.float32)
    assert run(layer, x, 3, ONLY_CONV)[3]
    assert not run(layer, x, 3, "generic")[3]
    monkeypatch.setenv("DPTRAIN_NATIVE", "off")
    native.reload()
    try:
        assert not run(layer, x, 3, "auto")[3]
    finally:
        monkeypatch.delenv("DPTRAIN_NATIVE")
        native.reload()
    assert conv_native.applies(x, 8)


def test_thesis_cnn_float32_matches_numpy_path_with_blocked_first_layer(rng):
    """Both convolutions compiled, the first one's output handed to the fused batch norm
    window offset first: the model's loss gradients match the NumPy path's."""
    from dptrain import models
    outs = {}
    x = rng.standard_normal((3, 1, 16, 16)).astype(np.float32)
    for kernels in (WITH_BN, "generic"):
        old, backend.kernels = backend.kernels, kernels
        try:
            model = models.get("thesis-cnn", input_shape=(1, 16, 16), seed=3)
            model.layers[0].needs_input_grad = False
            y = model.forward(x, True, nn.BatchContext(np.arange(3), step=0))
            convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2D)]
            assert [c._native for c in convs] == [kernels == WITH_BN] * 2
            assert model.layers[1]._blocked is not None
            model.backward(np.ones_like(y) / y.size)
            outs[kernels] = (y, {k: g.copy() for k, g in model.named_grads()})
        finally:
            backend.kernels = old
    np.testing.assert_allclose(outs[WITH_BN][0], outs["generic"][0], rtol=0, atol=1e-4)
    for name, g in outs["generic"][1].items():
        np.testing.assert_allclose(outs[WITH_BN][1][name], g, rtol=0,
                                   atol=1e-4 * max(1.0, float(np.abs(g).max())), err_msg=name)


def test_thesis_cnn_float64_gradients_against_finite_differences(float64, rng, monkeypatch):
    from dptrain import models
    from gradcheck import check_model
    for module in (native, conv_direct, fused_cpu):
        monkeypatch.setattr(module, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(backend, "kernels", WITH_BN)
    model = models.get("thesis-cnn", input_shape=(1, 16, 16), seed=3)

    def paths(model):
        convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2D)]
        assert [c._native for c in convs] == [True, True]
        assert model.layers[1]._blocked is not None                # conv0 -> BN, blocked
    check_model(model, rng.standard_normal((3, 1, 16, 16)), rng.integers(0, 10, 3), rng, paths)
