"""Every layer's backward against central finite differences, float64, relative error < 1e-6.

Layers with CUDA kernels are checked twice (``kernel_path``): through the generic array code
and through the kernels' source compiled for the CPU.
"""
import numpy as np
import pytest

from dptrain import nn
from dptrain.nn import BatchContext
from gradcheck import check_layer, numeric_grad, rel_error

CONV_CASES = [
    # (c_in, c_out, kernel, stride, padding, input N, H, W)
    (1, 3, 3, 1, 0, (2, 5, 5)),
    (2, 4, 5, 1, 2, (3, 7, 6)),        # padding 2, non-square
    (3, 2, 3, 2, 1, (2, 8, 7)),        # stride 2
    (2, 3, (3, 2), 2, 2, (1, 6, 9)),   # batch 1, rectangular kernel
    (1, 2, 4, 3, 0, (2, 10, 11)),
]


def built(layer, rng):
    layer.initialize(rng)
    return layer


@pytest.mark.parametrize("c_in,c_out,k,stride,pad,nhw", CONV_CASES)
def test_conv2d(float64, rng, kernel_path, c_in, c_out, k, stride, pad, nhw):
    n, h, w = nhw
    layer = built(nn.Conv2D(c_in, c_out, k, stride=stride, padding=pad), rng)
    check_layer(layer, rng.standard_normal((n, c_in, h, w)), rng)


@pytest.mark.parametrize("c_in,c_out,k,stride,pad,nhw", CONV_CASES)
def test_conv2d_direct(float64, rng, c_in, c_out, k, stride, pad, nhw, monkeypatch):
    """The NCHW path for few input channels (nn/conv_direct.py; float32 only unless a test
    lets float64 in), with the input gradient it skips in a first layer."""
    from dptrain.nn import conv_direct
    monkeypatch.setattr(conv_direct, "DTYPES", (np.float32, np.float64))
    n, h, w = nhw
    layer = built(nn.Conv2D(c_in, c_out, k, stride=stride, padding=pad), rng)
    x = rng.standard_normal((n, c_in, h, w))
    layer.forward(x, True)
    assert layer._direct
    check_layer(layer, x, rng)


@pytest.mark.parametrize("c_in,c_out,k,stride,pad,nhw", CONV_CASES)
def test_conv2d_chunked(float64, rng, c_in, c_out, k, stride, pad, nhw, monkeypatch):
    """The channels-last path a few samples at a time (nn/conv_chunked.py; float32 only
    unless a test lets float64 in), here one sample per chunk."""
    from dptrain.nn import conv_chunked
    monkeypatch.setattr(conv_chunked, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_chunked, "COLUMN_BYTES", 1)
    n, h, w = nhw
    layer = built(nn.Conv2D(c_in, c_out, k, stride=stride, padding=pad), rng)
    x = rng.standard_normal((n, c_in, h, w))
    layer.forward(x, True)
    assert layer._chunked
    check_layer(layer, x, rng)


@pytest.mark.parametrize("n_in,n_out,batch", [(5, 3, 4), (7, 11, 1), (16, 2, 9)])
def test_dense(float64, rng, n_in, n_out, batch):
    check_layer(built(nn.Dense(n_in, n_out), rng), rng.standard_normal((batch, n_in)), rng)


@pytest.mark.parametrize("cls,kernel_path", [(nn.MaxPool2D, "generic"), (nn.MaxPool2D, "cuda-kernels"),
                                             (nn.AvgPool2D, "generic")], indirect=["kernel_path"])
@pytest.mark.parametrize("k,stride,pad,shape", [
    (2, None, 0, (2, 3, 6, 6)), (3, 2, 0, (2, 2, 7, 9)), (3, 1, 1, (1, 2, 5, 4)),
    (2, 2, 1, (3, 1, 5, 5)), ((2, 3), 2, 0, (2, 2, 6, 7))])
def test_pooling(float64, rng, kernel_path, cls, k, stride, pad, shape):
    check_layer(cls(k, stride=stride, padding=pad), rng.standard_normal(shape), rng)


def test_global_avg_pool(float64, rng):
    check_layer(nn.GlobalAvgPool(), rng.standard_normal((3, 4, 5, 2)), rng)


def test_flatten(float64, rng):
    check_layer(nn.Flatten(), rng.standard_normal((2, 3, 4, 5)), rng)


@pytest.mark.parametrize("shape", [(6, 4), (3, 5), (3, 2, 4, 5), (1, 3, 2, 2)])
def test_batchnorm_train(float64, rng, kernel_path, shape):
    layer = built(nn.BatchNorm(shape[1]), rng)
    layer.params["gamma"][...] = rng.uniform(0.5, 1.5, shape[1])
    layer.params["beta"][...] = rng.standard_normal(shape[1])
    check_layer(layer, rng.standard_normal(shape) * 2 + 1, rng)


@pytest.mark.parametrize("kernel_path,k,stride,pad,shape", [
    ("cuda-kernels", 2, None, 0, (3, 3, 6, 6)), ("cuda-kernels", 3, 2, 1, (2, 2, 7, 9)),
    ("cuda-kernels", 3, 1, 1, (2, 1, 5, 4)), ("cuda-kernels", (2, 3), 2, 0, (2, 4, 6, 7)),
    ("generic", 2, None, 0, (3, 3, 6, 6)), ("generic", 3, None, 0, (2, 3, 6, 9))],
    indirect=["kernel_path"])
def test_fused_batchnorm_relu_maxpool(float64, rng, kernel_path, k, stride, pad, shape,
                                      monkeypatch):
    """BatchNorm -> ReLU -> MaxPool2D run as one (the bn_relu_pool kernels, on the CPU; with
    the array code, nn/fused_cpu.py where the windows tile the input): the batch norm's
    forward is the pooled output and its backward the chain's input gradient. One channel
    has a negative gamma (the largest x is then the smallest output)."""
    from dptrain.nn import fused_cpu
    from dptrain.nn.fusion import link_bn_relu_pool
    monkeypatch.setattr(fused_cpu, "DTYPES", (np.float32, np.float64))
    c = shape[1]
    bn, relu, pool = built(nn.BatchNorm(c), rng), nn.ReLU(), nn.MaxPool2D(k, stride=stride, padding=pad)
    assert link_bn_relu_pool([bn, relu, pool]) == 1
    bn.params["gamma"][...] = np.linspace(-1.2, 1.5, c) if c > 1 else -0.8
    bn.params["beta"][...] = rng.standard_normal(c) * 0.5
    x = rng.standard_normal(shape) * 2 + 1
    assert bn.forward(x, True).shape[2:] == pool.output_shape(shape[1:])[1:]
    assert (bn._cpu_fused is not None) == (kernel_path == "generic")
    check_layer(bn, x, rng)


def test_batchnorm_eval(float64, rng):
    layer = built(nn.BatchNorm(3), rng)
    layer.buffers["running_mean"][...] = rng.standard_normal(3)
    layer.buffers["running_var"][...] = rng.uniform(0.5, 2, 3)
    x = rng.standard_normal((4, 3, 2, 2))
    y = layer.forward(x, train=False)
    expected = ((x - layer.buffers["running_mean"][None, :, None, None])
                / np.sqrt(layer.buffers["running_var"][None, :, None, None] + layer.eps))
    np.testing.assert_allclose(y, expected, rtol=1e-12)


@pytest.mark.parametrize("cls,kwargs", [
    (nn.ReLU, {}), (nn.LeakyReLU, {"alpha": 0.1}), (nn.ELU, {"alpha": 0.7}),
    (nn.Sigmoid, {}), (nn.Tanh, {}), (nn.Softplus, {})])
@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 4, 4)])
def test_activations(float64, rng, cls, kwargs, shape):
    x = rng.standard_normal(shape) * 3
    x[np.abs(x) < 1e-3] = 0.5            # keep away from the kinks at 0
    check_layer(cls(**kwargs), x, rng)


@pytest.mark.parametrize("shape", [(4, 3), (2, 3, 4, 4)])
def test_prelu(float64, rng, shape):
    layer = built(nn.PReLU(shape[1]), rng)
    x = rng.standard_normal(shape) * 3
    x[np.abs(x) < 1e-3] = 0.5
    check_layer(layer, x, rng)


@pytest.mark.parametrize("shape", [(5, 8), (3, 2, 4, 4)])
def test_dropout_with_context(float64, rng, shape):
    layer = nn.Dropout(0.3)
    layer.context = BatchContext(np.arange(10, 10 + shape[0]), step=7, seed=1)
    check_layer(layer, rng.standard_normal(shape), rng)


@pytest.mark.parametrize("reg", [nn.L2(0.3), nn.L1(0.2)])
def test_regularised_dense(float64, rng, reg):
    layer = built(nn.Dense(4, 3, regularizer=reg), rng)
    x = rng.standard_normal((5, 4))
    r = rng.standard_normal((5, 3))

    def f():
        return float((layer.forward(x, True) * r).sum()) + layer.regularization_loss()

    layer.forward(x, True)
    layer.backward(r)
    analytic = layer.grads["W"].copy()
    idx, num = numeric_grad(f, layer.params["W"], rng)
    assert rel_error(analytic.reshape(-1)[idx], num) < 1e-6


@pytest.mark.parametrize("batch,classes,weighted,normalizer", [
    (5, 4, False, None), (1, 10, False, None), (6, 3, True, None), (4, 5, False, 16.0)])
def test_softmax_cross_entropy(float64, rng, batch, classes, weighted, normalizer):
    loss = nn.SoftmaxCrossEntropy()
    logits = rng.standard_normal((batch, classes)) * 4
    labels = rng.integers(0, classes, batch)
    w = rng.uniform(0.1, 2, batch) if weighted else None

    def f():
        return float(loss.forward(logits, labels, weights=w, normalizer=normalizer))

    f()
    analytic = loss.backward()
    idx, num = numeric_grad(f, logits, rng)
    assert rel_error(analytic.reshape(-1)[idx], num) < 1e-6


def test_softmax_cross_entropy_is_stable_and_matches_formula(float64):
    loss = nn.SoftmaxCrossEntropy()
    logits = np.array([[1000.0, 0.0, -1000.0], [1.0, 2.0, 3.0]])
    value = loss.forward(logits, np.array([0, 2]))
    expected_second = -np.log(np.exp(3) / np.exp([1, 2, 3]).sum())
    np.testing.assert_allclose(value, (0.0 + expected_second) / 2, rtol=1e-12)
    grad = loss.backward()
    probs = np.exp(logits[1] - 3) / np.exp(logits[1] - 3).sum()
    np.testing.assert_allclose(grad[1], (probs - [0, 0, 1]) / 2, rtol=1e-12)   # (softmax - onehot)/B


@pytest.mark.parametrize("labels_as_ids", [True, False])
def test_mse(float64, rng, labels_as_ids):
    loss = nn.MSE()
    pred = rng.standard_normal((4, 3))
    target = rng.integers(0, 3, 4) if labels_as_ids else rng.standard_normal((4, 3))

    def f():
        return float(loss.forward(pred, target))

    f()
    analytic = loss.backward()
    idx, num = numeric_grad(f, pred, rng)
    assert rel_error(analytic.reshape(-1)[idx], num) < 1e-6


def test_whole_model_gradient(float64, rng, kernel_path):
    """Backprop through a full zoo model (thesis-cnn on a small input) against differences,
    with the generic array code and through the CUDA kernels (its two BatchNorm -> ReLU ->
    MaxPool2D runs fused)."""
    check_whole_model(rng, cpu_fused=False)


def test_whole_model_gradient_cpu_fused(float64, rng, monkeypatch):
    """The same with both runs fused by nn/fused_cpu.py and the first convolution in NCHW
    (conv_direct.py), its output handed over window offset first (float64 let in)."""
    from dptrain.nn import conv_direct, fused_cpu
    monkeypatch.setattr(fused_cpu, "DTYPES", (np.float32, np.float64))
    monkeypatch.setattr(conv_direct, "DTYPES", (np.float32, np.float64))
    check_whole_model(rng, cpu_fused=True)


def check_whole_model(rng, cpu_fused):
    from dptrain import models
    from gradcheck import check_model
    model = models.get("thesis-cnn", input_shape=(1, 16, 16), seed=3)

    def paths(model):
        ran = [layer._cpu_fused is not None for layer in model.layers
               if isinstance(layer, nn.BatchNorm)]
        assert ran == [cpu_fused] * 2
        assert (model.layers[1]._blocked is not None) == cpu_fused     # conv0 -> BN, blocked
    check_model(model, rng.standard_normal((3, 1, 16, 16)), rng.integers(0, 10, 3), rng, paths)


def test_cpu_fused_run_matches_the_unfused_layers_with_ties(float64, rng, monkeypatch):
    """nn/fused_cpu.py against BatchNorm, ReLU and MaxPool2D run one by one, on an input full
    of equal values (a digit's blank background): the gradient goes to each window's first
    maximum, and the forward output is the same bit for bit."""
    from dptrain.nn import fused_cpu
    from dptrain.nn.fusion import link_bn_relu_pool
    monkeypatch.setattr(fused_cpu, "DTYPES", (np.float32, np.float64))
    shape = (4, 3, 6, 8)
    x = rng.integers(0, 3, shape).astype(float)
    dy = rng.standard_normal((4, 3, 3, 4))
    results = []
    for linked in (True, False):
        layers = [built(nn.BatchNorm(3), np.random.default_rng(1)), nn.ReLU(), nn.MaxPool2D(2)]
        layers[0].params["gamma"][...] = [-0.7, 0.0, 1.3]
        if linked:
            assert link_bn_relu_pool(layers) == 1
        y = x
        for layer in layers:
            y = layer.forward(y, True)
        dx = dy
        for layer in reversed(layers):
            dx = layer.backward(dx)
        assert (layers[0]._cpu_fused is None) and (layers[2].bypass is False)
        results.append((y, dx, layers[0].grads["gamma"].copy(), layers[0].grads["beta"].copy()))
    (y1, dx1, g1, b1), (y0, dx0, g0, b0) = results
    assert np.array_equal(y1, y0)
    np.testing.assert_allclose(dx1, dx0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b1, b0, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g1[[0, 2]], g0[[0, 2]], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kernel_path", ["cuda-kernels"], indirect=True)
def test_first_convolution_hands_the_kernels_nchw(rng, kernel_path):
    """With the fused CUDA kernels (compiled for the CPU) on, float32: the first convolution runs
    in NCHW but does not hand its output window offset first, which the kernels would read
    as NCHW; the step matches the array code's."""
    from dptrain import backend, models
    backend.set_dtype("float32")
    try:
        x = rng.standard_normal((3, 1, 16, 16)).astype(np.float32)
        outs = []
        for mode in ("bn_relu_pool", "generic"):
            model = models.get("thesis-cnn", input_shape=(1, 16, 16), seed=3)
            for layer in model.layers:
                layer.backend = backend.Backend(np, np.float32, mode)
            outs.append(model.forward(x, True, BatchContext(np.arange(3), step=0)))
            assert (model.layers[1]._blocked is None) == (mode != "generic")
        np.testing.assert_allclose(outs[0], outs[1], rtol=1e-4, atol=1e-5)
    finally:
        backend.set_dtype("float64")
