"""Winograd F(2x2, 3x3) convolution (nn/conv_winograd.py): its gradients against finite
differences in float64 (let in for the test), and its float32 results against the im2col path."""
import numpy as np
import pytest

from dptrain import backend, nn
from dptrain.nn import conv_winograd
from gradcheck import check_layer

CASES = [
    # (c_in, c_out, padding, input N, H, W)
    (2, 3, 0, (2, 5, 5)),       # odd output (3x3): a half-empty last tile
    (3, 2, 1, (1, 6, 7)),       # batch 1, odd width
    (2, 4, 1, (3, 4, 4)),
    (1, 2, 0, (2, 4, 7)),       # one tile row
]


@pytest.fixture
def let_in_everything(monkeypatch):
    monkeypatch.setattr(conv_winograd, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(conv_winograd, "TILE_BYTES", 1)      # one sample per chunk


def built(layer, rng):
    layer.initialize(rng)
    return layer


@pytest.mark.parametrize("c_in,c_out,pad,nhw", CASES)
def test_winograd_gradients(float64, rng, let_in_everything, c_in, c_out, pad, nhw):
    n, h, w = nhw
    layer = built(nn.Conv2D(c_in, c_out, 3, padding=pad), rng)
    x = rng.standard_normal((n, c_in, h, w))
    layer.forward(x, True)
    assert layer._winograd
    check_layer(layer, x, rng)


def _run(layer, x, dy):
    y = layer.forward(x, True)
    dx = layer.backward(dy)
    return y, dx, layer.grads["W"].copy(), layer.grads["b"].copy()


@pytest.mark.parametrize("pad,nhw", [(0, (2, 9, 7)), (1, (1, 7, 9)), (1, (3, 8, 8))])
def test_winograd_agrees_with_im2col_in_float32(rng, monkeypatch, pad, nhw):
    backend.set_dtype("float32")
    try:
        n, h, w = nhw
        layer = built(nn.Conv2D(16, 24, 3, padding=pad), rng)
        x = rng.standard_normal((n, 16, h, w)).astype(np.float32)
        dy = rng.standard_normal((n, 24) + layer.output_shape(x.shape[1:])[1:]).astype(np.float32)
        fast = _run(layer, x, dy)
        assert layer._winograd
        monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 10 ** 9)
        slow = _run(layer, x, dy)
        assert not layer._winograd
    finally:
        backend.set_dtype("float64")
    for a, b in zip(fast, slow):
        assert a.dtype == np.float32 and a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * np.abs(b).max())


def test_winograd_only_where_it_pays(rng):
    x32 = np.zeros((2, 32, 8, 8), np.float32)
    assert conv_winograd.applies(x32.transpose(0, 2, 3, 1), 32, 3, 3, 1, 1)
    assert not conv_winograd.applies(x32.astype(np.float64), 32, 3, 3, 1, 1)   # recordings
    assert not conv_winograd.applies(x32, 3, 3, 3, 1, 1)                      # few channels
    assert not conv_winograd.applies(x32, 32, 3, 3, 2, 1)                     # stride 2
    assert not conv_winograd.applies(x32, 32, 5, 5, 1, 2)
    assert not conv_winograd.applies(x32, 32, 3, 3, 1, 2)


def test_whole_model_gradient_winograd(float64, rng, monkeypatch):
    """Backprop through a narrow vgg-cifar (small input) with its 3x3 convolutions from 4
    channels up on the Winograd path (float64 let in; the 3-channel first layer stays on
    im2col)."""
    from dptrain.models import Sequential, zoo
    from gradcheck import check_model
    monkeypatch.setattr(conv_winograd, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 4)
    model = Sequential(zoo.vgg_cifar((3, 8, 8), 10, widths=(4, 6, 8)), (3, 8, 8), seed=3)

    def paths(model):
        convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2D)]
        assert [c._winograd for c in convs] == [False] + [True] * 5
    check_model(model, rng.standard_normal((2, 3, 8, 8)), rng.integers(0, 10, 2), rng, paths)
