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
    backend.set_dtype(np.dtype(dtype).name)        # parameters and gradients in ``dtype``
    try:
        layer.initialize(None)
    finally:
        backend.set_dtype("float32")
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


@pytest.mark.parametrize("kernel_path", ["cuda-kernels"], indirect=True)
@pytest.mark.parametrize("model,dataset", [("thesis-cnn", "synthetic:1x28x28:120"),
                                           ("vgg-cifar", "synthetic:3x32x32:40")])
def test_training_through_the_kernels_matches_the_generic_path(kernel_path, model, dataset):
    """A few float64 steps of a whole model, every conv/pool/batch-norm dispatched to the
    CUDA kernels' source, give the generic path's parameters."""
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
    through = Trainer(cfg)
    through.run()
    backend.set_dtype("float32")
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
    assert backend.kernels == "auto"
