"""5x5 convolutions through the compiled Winograd F(2x2, 5x5) (nn/winograd5_native.py): the
same results as the im2col path in float32, gradients against finite differences in float64,
NaN kept, and the --kernels choice selecting the path."""
import numpy as np
import pytest

from dptrain import backend, native, nn
from dptrain.nn import winograd5_native
from gradcheck import check_layer

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason=f"compiled CPU kernels: {native.status()}")

# (n, c_in, c_out, h, w, pad): odd outputs (a cropped last tile), every padding, one tile
SHAPES = [(3, 16, 5, 12, 12, 0), (2, 17, 3, 9, 11, 1), (2, 16, 4, 7, 8, 2), (1, 16, 2, 5, 5, 0),
          (4, 20, 8, 13, 10, 2)]


def layer_on(kernels, c_in, c_out, pad, dtype=np.float32, seed=0):
    conv = nn.Conv2D(c_in, c_out, 5, padding=pad)
    conv.backend = backend.Backend(dtype=dtype, kernels=kernels)
    conv.initialize(np.random.default_rng(seed))
    conv.params["b"][...] = np.linspace(-0.5, 0.5, c_out)
    return conv


def run(kernels, x, c_out, pad):
    conv = layer_on(kernels, x.shape[1], c_out, pad)
    y = conv.forward(x, True)
    path = conv._winograd_path
    dy = np.random.default_rng(7).standard_normal(y.shape).astype(x.dtype)
    dx = conv.backward(dy)
    return y, dx, conv.grads["W"].copy(), conv.grads["b"].copy(), path


@pytest.mark.parametrize("n,c_in,c_out,h,w,pad", SHAPES)
def test_compiled_winograd_matches_im2col_in_float32(rng, n, c_in, c_out, h, w, pad):
    x = rng.standard_normal((n, c_in, h, w)).astype(np.float32)
    ours, theirs = run("auto", x, c_out, pad), run("generic", x, c_out, pad)
    assert ours[-1] is winograd5_native and theirs[-1] is None
    for a, b, what in zip(ours[:4], theirs[:4], ("y", "dx", "dW", "db")):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * np.abs(b).max(), err_msg=what)


@pytest.mark.parametrize("chunk_bytes", [1, 1 << 19])
def test_one_sample_per_chunk_gives_the_same(rng, monkeypatch, chunk_bytes):
    monkeypatch.setattr(winograd5_native, "CHUNK_BYTES", chunk_bytes)
    x = rng.standard_normal((3, 16, 9, 9)).astype(np.float32)
    ours, theirs = run("auto", x, 4, 1), run("generic", x, 4, 1)
    for a, b in zip(ours[:4], theirs[:4]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5 * np.abs(b).max())


def test_nan_reaches_the_outputs_whose_window_holds_it(rng):
    x = rng.standard_normal((2, 16, 10, 10)).astype(np.float32)
    x[1, 3, 6, 6] = np.nan
    y = run("auto", x, 3, 0)[0]
    assert np.isnan(y[1, :, 2:6, 2:6]).all() and np.isfinite(y[0]).all()


@pytest.mark.parametrize("kernels,compiled", [("auto", True), ("cpu_winograd", True),
                                              ("generic", False), ("cpu_batchnorm", False)])
def test_kernels_choice_selects_the_path(rng, kernels, compiled):
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    assert (run(kernels, x, 2, 0)[-1] is winograd5_native) == compiled


@pytest.mark.parametrize("pad,h,w", [(0, 8, 7), (2, 5, 6)])
def test_compiled_gradients_against_finite_differences(float64, rng, monkeypatch, pad, h, w):
    monkeypatch.setattr(native, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(winograd5_native, "MIN_CHANNELS", 2)
    conv = layer_on("auto", 3, 2, pad, dtype=np.float64, seed=2)
    x = rng.standard_normal((2, 3, h, w))
    conv.forward(x, True)
    assert conv._winograd_path is winograd5_native
    check_layer(conv, x, rng)


def test_backward_from_kept_tiles_equals_backward_that_recomputes_them(rng):
    """Training keeps forward's transformed input (V) for backward; without it backward
    recomputes V per chunk: the same bits either way."""
    x = rng.standard_normal((5, 16, 10, 9)).astype(np.float32)
    w = rng.standard_normal((3, 16, 5, 5)).astype(np.float32)
    u = winograd5_native.filter_transform(w)
    y, kept = winograd5_native.forward(x, u, None, 1, keep=True)
    np.testing.assert_array_equal(y, winograd5_native.forward(x, u, None, 1))
    dy = rng.standard_normal(y.shape).astype(np.float32)
    for a, b in zip(winograd5_native.backward(x, dy, u, 1, True, kept=kept),
                    winograd5_native.backward(x, dy, u, 1, True)):
        np.testing.assert_array_equal(a, b)
