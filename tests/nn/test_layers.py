"""Forward results against naive definitions, BatchNorm modes and Dropout masks."""
import numpy as np
import pytest

from dptrain import nn
from dptrain.nn import BatchContext


def naive_conv(x, w, b, stride, pad):
    n, c, h, wd = x.shape
    k, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    y = np.zeros((n, k, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            y[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return y


def naive_pool(x, k, stride, reduce):
    n, c, h, w = x.shape
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    y = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            y[:, :, i, j] = reduce(x[:, :, i * stride:i * stride + k, j * stride:j * stride + k], axis=(2, 3))
    return y


@pytest.mark.parametrize("k,stride,pad", [(3, 1, 0), (5, 2, 2), (2, 3, 1)])
def test_conv_forward_matches_definition(float64, rng, k, stride, pad):
    layer = nn.Conv2D(3, 4, k, stride=stride, padding=pad)
    layer.initialize(rng)
    layer.params["b"][...] = rng.standard_normal(4)
    x = rng.standard_normal((2, 3, 9, 8))
    np.testing.assert_allclose(layer.forward(x, False),
                               naive_conv(x, layer.params["W"], layer.params["b"], stride, pad),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("cls,reduce", [(nn.MaxPool2D, np.max), (nn.AvgPool2D, np.mean)])
@pytest.mark.parametrize("k,stride", [(2, 2), (3, 1), (3, 2)])
def test_pool_forward_matches_definition(float64, rng, cls, reduce, k, stride):
    x = rng.standard_normal((2, 3, 9, 8))
    np.testing.assert_allclose(cls(k, stride).forward(x, False), naive_pool(x, k, stride, reduce))


def test_maxpool_gradient_goes_to_first_argmax_only(float64):
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])       # three tied maxima
    pool = nn.MaxPool2D(2)
    pool.forward(x, True)
    dx = pool.backward(np.array([[[[5.0]]]]))
    np.testing.assert_array_equal(dx, [[[[5.0, 0.0], [0.0, 0.0]]]])


def test_batchnorm_train_uses_batch_stats_and_updates_running(float64, rng):
    bn = nn.BatchNorm(2, momentum=0.1)
    bn.initialize(rng)
    x = rng.standard_normal((50, 2, 3, 3)) * 3 + 5
    y = bn.forward(x, train=True)
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-4)
    np.testing.assert_allclose(bn.buffers["running_mean"], 0.1 * x.mean(axis=(0, 2, 3)))
    m = x.size // 2
    np.testing.assert_allclose(bn.buffers["running_var"],
                               0.9 + 0.1 * x.var(axis=(0, 2, 3)) * m / (m - 1))


def test_batchnorm_eval_uses_running_stats(float64, rng):
    bn = nn.BatchNorm(4)
    bn.initialize(rng)
    x = rng.standard_normal((30, 4)) * 2 + 3
    for _ in range(200):
        bn.forward(x, train=True)                      # running stats converge to x's
    y_eval = bn.forward(x, train=False)
    np.testing.assert_allclose(y_eval.mean(axis=0), 0, atol=1e-6)
    # a single sample in eval mode is normalised with the same statistics
    np.testing.assert_allclose(bn.forward(x[:1], train=False), y_eval[:1])


def test_dropout_scaling_and_rate(float64, rng):
    d = nn.Dropout(0.25)
    d.context = BatchContext(np.arange(2000), step=3, seed=9)
    x = np.ones((2000, 50))
    y = d.forward(x, train=True)
    kept = y != 0
    assert abs(kept.mean() - 0.75) < 0.01
    np.testing.assert_allclose(y[kept], 1 / 0.75)
    np.testing.assert_array_equal(d.backward(np.ones_like(x)), y)   # same mask in backward
    np.testing.assert_array_equal(d.forward(x, train=False), x)     # identity at inference


def test_dropout_mask_keyed_by_global_sample_index(float64):
    """A sample gets the same mask whether it sits alone or inside a larger batch."""
    d = nn.Dropout(0.5)
    x = np.ones((6, 20))
    d.context = BatchContext(np.array([10, 11, 12, 13, 14, 15]), step=4, seed=2)
    full = d.forward(x, True)
    d.context = BatchContext(np.array([13, 14]), step=4, seed=2)
    part = d.forward(x[:2], True)
    np.testing.assert_array_equal(full[3:5], part)
    d.context = BatchContext(np.array([13, 14]), step=5, seed=2)      # another step, another mask
    assert not np.array_equal(d.forward(x[:2], True), part)


def test_layer_writes_gradients_in_place(float64, rng):
    """Gradients must land in the arrays of layer.grads: buckets hold views of them."""
    for layer, x in [(nn.Dense(4, 3), rng.standard_normal((2, 4))),
                     (nn.Conv2D(2, 3, 3), rng.standard_normal((2, 2, 5, 5))),
                     (nn.BatchNorm(2), rng.standard_normal((4, 2, 3, 3)))]:
        layer.initialize(rng)
        before = {k: id(v) for k, v in layer.grads.items()}
        y = layer.forward(x, True)
        layer.backward(np.ones_like(y))
        assert {k: id(v) for k, v in layer.grads.items()} == before
        assert all(np.abs(g).sum() > 0 for g in layer.grads.values())


class _NoHostDataXP:
    """NumPy as a device array module that refuses arrays made from host data (lists, Python
    or NumPy scalars): CuPy copies those through a pinned staging buffer, which a CUDA graph
    capture would record as a copy from a buffer CuPy frees again (train/graph_capture.py)."""

    def __getattr__(self, name):
        return getattr(np, name)

    def asarray(self, a, *args, **kwargs):
        if not isinstance(a, np.ndarray):
            raise AssertionError(f"device array made from host data {a!r}")
        return np.asarray(a, *args, **kwargs)

    array = asarray


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 5)])
def test_synchronised_batch_norm_makes_no_array_from_host_data(float64, rng, kernel_path,
                                                               monkeypatch, shape):
    """--sync-bn's statistics in a captured step: its count column is filled on the device."""
    from dptrain.nn import norm
    layer = nn.BatchNorm(3)
    layer.initialize(rng)
    sums = []
    layer.sync = lambda a: sums.append(a.copy()) or a.copy()     # one rank: the sum is itself
    x = rng.standard_normal(shape) * 2 + 1
    expected = layer.forward(x, True)
    sums.clear()
    monkeypatch.setattr(norm, "get_array_module", lambda a: _NoHostDataXP())
    np.testing.assert_array_equal(layer.forward(x, True), expected)
    count = x.size // 3
    assert sums[0][-1] == count and sums[0].shape == (4,)        # [3 channel sums, count]
    layer.backward(rng.standard_normal(shape))
