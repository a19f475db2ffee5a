"""The compiled Winograd F(4x4, 3x3) (dptrain/native/src/winograd*.c via nn/winograd_native.py):
the same results as conv_winograd.py's NumPy F(2x2, 3x3) in float32 (odd sizes, both
paddings, several chunks, NaN propagating), float64 gradients against finite differences,
and --kernels generic keeping the NumPy path."""
import numpy as np
import pytest

from dptrain import backend, native, nn
from dptrain.nn import conv_winograd, winograd_native
from gradcheck import check_layer

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason="compiled CPU kernels not built (make builds them)")
AUTO, GENERIC = backend.Backend(kernels="auto"), backend.Backend(kernels="generic")

SHAPES = [
    # (N, C, K, H, W, padding)
    (3, 16, 24, 9, 7, 0),       # odd output (7x5): half-empty last tiles
    (1, 17, 5, 7, 10, 1),       # batch 1, odd height
    (3, 16, 16, 8, 8, 1),
    (2, 16, 3, 4, 3, 0),        # one tile row, one tile column
    (5, 20, 9, 3, 3, 1),        # more channels than pixels
    (2, 16, 5, 6, 10, 0),       # no padding, the last tiles reach the right edge
    (2, 16, 4, 13, 14, 1),      # 4 tile rows: the carried rows of the input adjoint
    (1, 16, 3, 5, 30, 1),       # 8 tiles a row (the kernels special-case 2, 4 and 8)
]


def _pass(x, w, bias, pad, dy, kernels):
    u = conv_winograd.filter_transform(w, kernels)
    y = conv_winograd.forward(x, u, bias, pad)
    db = np.empty(w.shape[0], x.dtype)
    dw, dx = conv_winograd.backward(x, dy, u, pad, True, db)
    return y, np.array(dw), dx, db


@pytest.mark.parametrize("n,c,k,h,w,pad", SHAPES)
@pytest.mark.parametrize("chunk_bytes", [1, 1 << 30])       # one sample per chunk, one chunk
def test_compiled_transforms_agree_with_numpy_in_float32(rng, monkeypatch, chunk_bytes,
                                                         n, c, k, h, w, pad):
    monkeypatch.setattr(winograd_native, "CHUNK_BYTES", chunk_bytes)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(k).astype(np.float32)
    oh, ow = h + 2 * pad - 2, w + 2 * pad - 2
    dy = rng.standard_normal((n, k, oh, ow)).astype(np.float32)
    compiled, numpy = _pass(x, wt, bias, pad, dy, AUTO), _pass(x, wt, bias, pad, dy, GENERIC)
    for name, a, b in zip(("y", "dW", "dX", "db"), compiled, numpy):
        assert a.dtype == np.float32 and a.shape == b.shape, name
        # F(4x4, 3x3) against F(2x2, 3x3): both within float32 rounding of the exact result
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5 * np.abs(b).max(), err_msg=name)


def test_nan_propagates_through_every_transform(rng):
    n, c, k, h, w = 2, 16, 4, 6, 6
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    x[1, 3, 2, 4] = np.nan
    wt = rng.standard_normal((k, c, 3, 3)).astype(np.float32)
    dy = rng.standard_normal((n, k, h, w)).astype(np.float32)
    dy[0, 2, 5, 5] = np.nan
    y, dw, dx, db = _pass(x, wt, None, 1, dy, AUTO)
    assert np.isnan(y[1]).any() and not np.isnan(y[0]).any()
    assert np.isnan(dw).any() and np.isnan(db[2]) and not np.isnan(db[[0, 1, 3]]).any()
    assert np.isnan(dx[0]).any() and not np.isnan(dx[1]).any()


@pytest.mark.parametrize("c_in,c_out,pad,nhw", [
    (2, 3, 0, (2, 5, 5)), (3, 2, 1, (1, 6, 7)), (2, 4, 1, (3, 4, 4)), (1, 2, 0, (2, 4, 7))])
def test_compiled_gradients_against_finite_differences(float64, rng, monkeypatch,
                                                       c_in, c_out, pad, nhw):
    monkeypatch.setattr(native, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_winograd, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 1)
    monkeypatch.setattr(winograd_native, "CHUNK_BYTES", 1)
    calls = []
    monkeypatch.setattr(winograd_native, "backward", _spy(winograd_native.backward, calls))
    n, h, w = nhw
    layer = nn.Conv2D(c_in, c_out, 3, padding=pad)
    layer.initialize(rng)
    x = rng.standard_normal((n, c_in, h, w))
    layer.forward(x, True)
    assert layer._winograd
    check_layer(layer, x, rng)
    assert calls                        # the compiled path ran


def _spy(function, calls):
    def spied(*args, **kwargs):
        calls.append(function.__name__)
        return function(*args, **kwargs)
    return spied


@pytest.mark.parametrize("kernels,runs", [("auto", True), ("cpu_winograd", True),
                                          ("generic", False), ("cpu_batchnorm", False)])
def test_kernels_choice_selects_the_path(rng, monkeypatch, kernels, runs):
    calls = []
    for name in ("forward", "backward"):
        monkeypatch.setattr(winograd_native, name, _spy(getattr(winograd_native, name), calls))
    backend.set_kernels(kernels)
    backend.set_dtype("float32")
    layer = nn.Conv2D(16, 8, 3, padding=1)
    layer.initialize(rng)
    x = rng.standard_normal((2, 16, 6, 6)).astype(np.float32)
    y = layer.forward(x, True)
    layer.backward(np.ones_like(y))
    assert calls == (["forward", "backward"] if runs else [])


def test_whole_model_gradient_through_the_compiled_path(float64, rng, monkeypatch):
    """Backprop through a narrow vgg-cifar whose 3x3 convolutions from 4 channels up run the
    compiled F(4x4, 3x3) (float64 let in), against finite differences."""
    from dptrain.models import Sequential, zoo
    from gradcheck import check_model
    monkeypatch.setattr(native, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_winograd, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_winograd, "MIN_CHANNELS", 4)
    model = Sequential(zoo.vgg_cifar((3, 8, 8), 10, widths=(4, 6, 8)), (3, 8, 8), seed=3)

    def paths(model):
        convs = [layer for layer in model.layers if isinstance(layer, nn.Conv2D)]
        assert [c._winograd for c in convs] == [False] + [True] * 5
        assert all(c._cols[1].shape[0] == winograd_native.POSITIONS for c in convs[1:])
    check_model(model, rng.standard_normal((2, 3, 8, 8)), rng.integers(0, 10, 2), rng, paths)
