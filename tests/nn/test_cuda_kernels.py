"""The CUDA kernels' source, checked without a GPU.

Each kernel is a grid-stride loop, so run as one block of one thread it visits every output
element: compiled with g++ under a small shim, it runs on the CPU through the very Python
wrappers the GPU uses, and must match the generic NumPy path (float64 and float32). nvcc,
where installed, also compiles the source for an H100 (sm_90), as NVRTC will on a GPU.
"""
import shutil
import subprocess

import numpy as np
import pytest

from dptrain import backend
from dptrain.backend import Backend
from dptrain.nn import cuda_kernels as ck
from dptrain.nn import kernels
from dptrain.nn.norm import BatchNorm
from dptrain.nn.pool import MaxPool2D


def rng_array(shape, dtype, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


TOL = {np.float64: 1e-12, np.float32: 1e-5}
CONV = [((2, 7, 6, 3), 3, 3, 1, 1), ((3, 8, 8, 2), 5, 5, 1, 2), ((2, 9, 7, 4), 3, 2, 2, 0),
        ((1, 6, 6, 1), 2, 2, 2, 1), ((2, 5, 5, 3), 1, 1, 1, 0)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,kh,kw,stride,pad", CONV)
def test_im2col_and_col2im_match_the_generic_path(host_launcher, dtype, shape, kh, kw, stride, pad):
    x = rng_array(shape, dtype)
    launch = host_launcher(dtype)
    cols = ck.im2col(x, kh, kw, stride, pad, launch=launch)
    np.testing.assert_array_equal(cols, kernels.im2col(x, kh, kw, stride, pad))
    nchw = np.ascontiguousarray(x.transpose(0, 3, 1, 2))       # as the convolution passes it
    view_cols = ck.im2col(nchw.transpose(0, 2, 3, 1), kh, kw, stride, pad, launch=launch)
    np.testing.assert_array_equal(view_cols, cols)
    n, h, w, c = shape
    oh, ow = kernels.out_size(h, kh, stride, pad), kernels.out_size(w, kw, stride, pad)
    blocks = rng_array((kh * kw, n * oh * ow, c), dtype, seed=1)
    np.testing.assert_allclose(ck.col2im(blocks, shape, kh, kw, stride, pad, launch=launch),
                               kernels.col2im(blocks, shape, kh, kw, stride, pad), rtol=TOL[dtype],
                               atol=TOL[dtype])


POOL = [((2, 3, 8, 8), 2, 2, 0), ((2, 2, 9, 7), 3, 2, 1), ((1, 2, 6, 6), 3, 1, 1), ((2, 1, 5, 5), 2, 3, 0)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,k,stride,pad", POOL)
def test_max_pooling_matches_the_generic_path(host_launcher, dtype, shape, k, stride, pad):
    x = rng_array(shape, dtype)
    x[0, 0, :2, :2] = 1.5                      # ties: the first maximum takes the gradient
    launch = host_launcher(dtype)
    layer = MaxPool2D(k, stride, pad)
    y_ref = layer.forward(x, True)
    dy = rng_array(y_ref.shape, dtype, seed=2)
    dx_ref = layer.backward(dy)
    y, arg = ck.maxpool_forward(x, k, k, stride, pad, launch=launch)
    np.testing.assert_array_equal(y, y_ref)
    assert arg.dtype == np.int32 and arg.min() >= 0 and arg.max() < k * k
    np.testing.assert_allclose(ck.maxpool_backward(dy, arg, x.shape, k, k, stride, pad, launch=launch),
                               dx_ref, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 5)])
def test_fused_batch_norm_matches_the_generic_path(host_launcher, dtype, shape):
    x = rng_array(shape, dtype) * 3 + 1
    launch = host_launcher(dtype)
    layer = BatchNorm(shape[1])
    layer.backend = Backend(np, dtype, "generic")  # the array code, in ``dtype``
    layer.initialize(None)
    layer.params["gamma"][...] = np.linspace(0.5, 2, shape[1])
    layer.params["beta"][...] = np.linspace(-1, 1, shape[1])
    y_ref = layer.forward(x, True)
    axes, view = layer._axes_and_view(x)
    mean = x.mean(axis=axes)
    inv_std = 1 / np.sqrt(((x - mean.reshape(view)) ** 2).mean(axis=axes) + layer.eps)
    xhat, y = ck.bn_normalize(x, mean, inv_std, layer.params["gamma"], layer.params["beta"],
                              launch=launch)
    np.testing.assert_allclose(y, y_ref, rtol=TOL[dtype], atol=TOL[dtype])
    np.testing.assert_allclose(xhat, layer._xhat, rtol=TOL[dtype], atol=TOL[dtype])
    dy = rng_array(shape, dtype, seed=3)
    dx_ref = layer.backward(dy)
    total = x.size // shape[1]
    scale = layer.params["gamma"] * layer._inv_std
    dx = ck.bn_input_grad(dy, layer._xhat, scale, total, dy.sum(axis=axes),
                          (dy * layer._xhat).sum(axis=axes), launch=launch)
    np.testing.assert_allclose(dx, dx_ref, rtol=TOL[dtype], atol=TOL[dtype])


# (shape, chunks per channel, threads per block): channel counts 1, 3 and 32, per-channel
# sizes that no block size divides, more chunks than a channel has elements, dense (N, F)
REDUCTIONS = [((5, 3, 7, 9), None, 4), ((2, 1, 13, 11), 7, 8), ((3, 32, 5, 7), None, 4),
              ((4, 3, 3, 5), 1, 16), ((2, 3, 2, 3), 17, 2), ((4, 1, 2, 2), 1, 1),
              ((37, 3), None, 4), ((9, 32), 3, 8)]


def _reduction_launcher(host_launcher, dtype, block):
    launch = host_launcher(dtype)
    launch.reduce_block = block
    return launch


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,chunks,block", REDUCTIONS)
def test_one_pass_batch_norm_statistics_are_exact_far_from_zero(host_launcher, dtype, shape,
                                                                chunks, block):
    """Mean and squared deviations per channel in one pass (Welford in each thread, Chan's
    merge in the block's tree and across chunks), against float64 NumPy on the same values:
    data of mean 1e3 and std 1, where sums of x and x*x in float32 lose the variance."""
    x = (rng_array(shape, np.float64) + 1e3).astype(dtype)
    axes = (0,) + tuple(range(2, x.ndim))
    launch = _reduction_launcher(host_launcher, dtype, block)
    mean, m2 = ck.bn_stats(x, launch=launch, chunks=chunks)
    x64 = x.astype(np.float64)
    count = x.size // shape[1]
    ref_mean, ref_var = x64.mean(axis=axes), x64.var(axis=axes)
    assert mean.dtype == m2.dtype == dtype
    rtol = 1e-13 if dtype == np.float64 else 3e-7
    np.testing.assert_allclose(mean, ref_mean, rtol=rtol)
    np.testing.assert_allclose(m2 / count, ref_var, rtol=1e-12 if dtype == np.float64 else 1e-5)
    if dtype == np.float32 and count > 100:   # the data is hard: naive float32 sums fail here
        naive = (x * x).mean(axis=axes, dtype=np.float32) - x.mean(axis=axes, dtype=np.float32) ** 2
        assert np.abs(naive / ref_var - 1).max() > 1e-5


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,chunks,block", REDUCTIONS)
def test_one_pass_batch_norm_backward_sums(host_launcher, dtype, shape, chunks, block):
    dy, xhat = rng_array(shape, dtype, seed=4), rng_array(shape, dtype, seed=5)
    axes = (0,) + tuple(range(2, dy.ndim))
    launch = _reduction_launcher(host_launcher, dtype, block)
    out_dy, out_dy_xhat = np.empty(shape[1], dtype), np.empty(shape[1], dtype)
    sum_dy, sum_dy_xhat = ck.bn_grad_sums(dy, xhat, launch=launch, chunks=chunks, out_dy=out_dy,
                                          out_dy_xhat=out_dy_xhat)
    assert sum_dy is out_dy and sum_dy_xhat is out_dy_xhat        # written in place
    dy64, xhat64 = dy.astype(np.float64), xhat.astype(np.float64)
    tol = TOL[dtype] * np.sqrt(dy.size)
    np.testing.assert_allclose(sum_dy, dy64.sum(axis=axes), rtol=tol, atol=tol)
    np.testing.assert_allclose(sum_dy_xhat, (dy64 * xhat64).sum(axis=axes), rtol=tol, atol=tol)


def test_reduction_grid_fills_the_device_and_keeps_work_per_thread(host_launcher):
    from dptrain.nn.kernels_cuda.grid import reduction_grid
    gpu = lambda: None                                        # noqa: E731  (no attributes)
    assert reduction_grid(gpu, 32, 256 * 24 * 24) == (32, 256)     # 1024 blocks for 32 channels
    assert reduction_grid(gpu, 3, 100) == (1, 256)                  # a small channel: one block
    assert reduction_grid(host_launcher(np.float32), 1, 10_000) == (64, 4)


FUSED = [((2, 3, 8, 8), 2, 2, 0), ((3, 1, 9, 7), 3, 2, 1), ((2, 32, 6, 6), 3, 1, 1),
         ((2, 3, 5, 5), 2, 3, 0), ((1, 3, 7, 6), 3, 3, 1)]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,k,stride,pad", FUSED)
def test_fused_bn_relu_maxpool_matches_the_unfused_layers(host_launcher, dtype, shape, k, stride,
                                                          pad):
    """The bn_relu_pool kernels against BatchNorm, ReLU and MaxPool2D run one after the other
    with the generic array code: outputs, the input gradient and gamma's and beta's. Gammas
    of both signs and a zero one; ties inside windows."""
    from dptrain.nn import ReLU
    from dptrain.nn.fusion import link_bn_relu_pool
    c = shape[1]
    layers = [BatchNorm(c), ReLU(), MaxPool2D(k, stride, pad)]

    def kernels(mode):
        for layer in layers:
            layer.backend = Backend(np, dtype, mode)
    kernels("auto")
    layers[0].initialize(None)
    bn = layers[0]
    bn.params["gamma"][...] = np.linspace(-1.5, 2, c) if c > 1 else -0.7
    if c >= 3:
        bn.params["gamma"][1] = 0.0
    bn.params["beta"][...] = np.linspace(-0.5, 0.5, c)
    x = rng_array(shape, dtype) * 3 + 1
    x[0, :, :2, :2] = 1.5                      # ties: the first maximum takes the gradient
    dx_ref, out_ref, grads_ref = _chain(layers, x, dtype)
    assert link_bn_relu_pool(layers) == 1
    launcher, ck.host_launcher = ck.host_launcher, host_launcher
    kernels("bn_relu_pool")
    try:
        dx, out, grads = _chain(layers, x, dtype)
    finally:
        ck.host_launcher = launcher
    assert layers[1]._passing and layers[2]._passing and bn._fused is None
    tol = TOL[dtype] * (1 if dtype == np.float64 else 10)
    np.testing.assert_allclose(out, out_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(dx, dx_ref, rtol=tol, atol=tol)
    for name in grads:
        np.testing.assert_allclose(grads[name], grads_ref[name], rtol=tol, atol=tol, err_msg=name)
    kernels("generic")                         # and the array code runs the three layers again
    ck.host_launcher = host_launcher           # (float32: fused by nn/fused_cpu.py, in its rounding)
    exact = 0 if dtype == np.float64 else tol
    try:
        np.testing.assert_allclose(_chain(layers, x, dtype)[0], dx_ref, rtol=exact, atol=exact)
    finally:
        ck.host_launcher = launcher


def test_fused_bn_relu_maxpool_keeps_a_nan_as_the_unfused_layers_do(host_launcher):
    """A NaN in a channel makes its statistics NaN: every pooled output of the channel is NaN,
    fused or not (so the loss, not a silent zero, reports it)."""
    from dptrain.nn import ReLU
    from dptrain.nn.fusion import link_bn_relu_pool
    layers = [BatchNorm(2), ReLU(), MaxPool2D(2)]
    layers[0].initialize(None)
    x = rng_array((2, 2, 4, 4), np.float32)
    x[1, 0, 3, 2] = np.nan
    reference = _chain(layers, x, np.float32)[1]
    link_bn_relu_pool(layers)
    launcher, ck.host_launcher = ck.host_launcher, host_launcher
    try:
        fused = _chain(layers, x, np.float32)[1]
    finally:
        ck.host_launcher = launcher
    assert layers[1]._passing
    assert np.isnan(reference[:, 0]).all() and np.isnan(fused[:, 0]).all()
    np.testing.assert_allclose(fused[:, 1], reference[:, 1], rtol=1e-5, atol=1e-6)


def _chain(layers, x, dtype):
    """(input gradient, output, BatchNorm's gradients) of the layers for a fixed output gradient."""
    y = x
    for layer in layers:
        y = layer.forward(y, True)
    dy = rng_array(y.shape, dtype, seed=6)
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return dy, y, {k: v.copy() for k, v in layers[0].grads.items()}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nvcc_compiles_the_kernels_for_an_h100(tmp_path, dtype):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("no CUDA toolkit (nvcc) on this machine")
    src = tmp_path / "k.cu"
    src.write_text(ck.source_for(dtype))
    out = subprocess.run([nvcc, "--ptx", "-arch=compute_90", "-std=c++14", "-o", str(tmp_path / "k.ptx"),
                          str(src)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ptx = (tmp_path / "k.ptx").read_text()
    for name in ck.SIGNATURES:
        assert f".entry {name}(" in ptx, name


FUSED = {"bn_relu_maxpool_forward", "bn_relu_maxpool_input_grad", "bn_stats_partial",
         "bn_stats_combine"}
ALONE = {"bn_stats_partial", "bn_normalize", "bn_grad_partial", "bn_input_grad"}


@pytest.mark.parametrize("kernel_path", ["cuda-kernels"], indirect=True)
@pytest.mark.parametrize("model,dataset,expected", [
    ("thesis-cnn", "synthetic:1x28x28:120", FUSED),     # both BN -> ReLU -> MaxPool2D fused
    ("vgg-cifar", "synthetic:3x32x32:40",               # and batch norms alone
     FUSED | {"bn_grad_partial", "sum_pairs_combine", "bn_normalize"}),
    # batch norms in branches and projection shortcuts, convolutions with stride 1 and 2
    ("resnet-small", "synthetic:1x8x8:120", ALONE)])
def test_training_through_the_kernels_matches_the_generic_path(kernel_path, model, dataset,
                                                               expected):
    """A few float64 steps of a whole model (residual blocks too), every conv/pool/batch-norm
    dispatched to the CUDA kernels' source, give the generic path's parameters."""
    from dptrain.nn import cuda_kernels
    from dptrain.train import TrainConfig, Trainer
    cfg = TrainConfig(model=model, dataset=dataset, dtype="float64", max_steps=3, batch_size=8,
                      quiet=True, threads=1, optimizer="momentum", lr=0.05)
    launcher, cuda_kernels.host_launcher = cuda_kernels.host_launcher, None
    try:
        generic = Trainer(cfg)
        generic.run()
    finally:
        cuda_kernels.host_launcher = launcher
    launched = []

    def recording(dtype):
        launch = launcher(dtype)

        def recorded(name, *args):
            launched.append(name)
            return launch(name, *args)
        recorded.__dict__.update(launch.__dict__)
        return recorded
    cuda_kernels.host_launcher = recording
    try:
        through = Trainer(cfg)
        through.run()
    finally:
        cuda_kernels.host_launcher = launcher
    assert expected <= set(launched)
    for (k, a), (_, b) in zip(generic.model.named_params(), through.model.named_params()):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.parametrize("kernel_path", ["cuda-kernels"], indirect=True)
def test_kernel_ops_comparison_covers_every_family(kernel_path):
    """The per-family comparison behind `dptrain bench --kernel-ops`, run here with the
    kernels compiled for the CPU (its times mean nothing off a GPU; its coverage does)."""
    from dptrain.bench.kernel_ops import compare_kernel_ops
    report = compare_kernel_ops(["thesis-cnn", "vgg-cifar"], batch=2, reps=1)
    assert set(report["families"]) == set(ck.FAMILIES)
    convs = [r for r in report["rows"] if r["family"] == "im2col"]
    assert len(convs) == 2 + 6                  # every conv has its own shape: thesis-cnn 2, vgg-cifar 6
    for r in report["rows"]:
        assert r["generic_ms"] > 0 and r["kernel_ms"] > 0
    assert backend.kernels == "all"                  # what kernel_path set: put back


def test_auto_leaves_out_the_families_that_lost_on_a_gpu():
    """`auto` (the default) runs the families that beat the generic array code where last
    measured on a GPU: not im2col. `all` runs every one, `generic` none."""
    families = ck.FAMILIES + ("optimizer",)
    auto = Backend(kernels="auto")
    assert not auto.kernels_enabled("im2col")
    assert all(auto.kernels_enabled(f) for f in families if f not in backend.NOT_IN_AUTO)
    assert all(Backend(kernels="all").kernels_enabled(f) for f in families)
    assert not any(Backend(kernels="generic").kernels_enabled(f) for f in families)
    named = Backend(kernels="im2col,optimizer")
    assert named.kernels_enabled("im2col") and not named.kernels_enabled("col2im")
    assert backend.check_kernels("im2col,optimizer") == "im2col,optimizer"
    with pytest.raises(ValueError, match="auto, all, generic"):
        backend.check_kernels("im2col,gemm")


def test_the_cupy_launcher_looks_each_kernel_up_once(monkeypatch):
    """CuPy's RawModule.get_function builds a new kernel object at every call: the launcher
    keeps what it got, so an eager step does not pay that per launch."""
    from dptrain.nn.kernels_cuda import compile
    looked_up, launched = [], []

    class Module:
        def get_function(self, name):
            looked_up.append(name)
            return lambda grid, block, args: launched.append(
                (name, grid, block, len(args), tuple(type(a).__name__ for a in args[-3:])))
    monkeypatch.setattr(compile, "_cupy_module", lambda dtype_name: Module())
    compile._cupy_launcher.cache_clear()
    try:
        launch = compile.cupy_launcher("float32")
        x = np.zeros(3, np.float32)
        for _ in range(3):
            launch("bn_normalize", 600, x, x, x, x, x, x, x, 3, 1, 1)
        assert looked_up == ["bn_normalize"]
        # the signature's casts ("...qiq"): CuPy passes a scalar as its NumPy type says
        assert launched == [("bn_normalize", (3,), (256,), 10, ("int64", "int32", "int64"))] * 3
    finally:
        compile._cupy_launcher.cache_clear()
