"""BatchNorm -> ReLU -> MaxPool2D through the compiled kernels (nn/fused_native.py): the same
results as the NumPy path (nn/fused_cpu.py) in float32, gradients against finite differences
in float64, NaN kept, and --kernels generic giving the NumPy path back."""
import numpy as np
import pytest

from dptrain import backend, native, nn
from dptrain.nn import conv_direct, fused_cpu
from dptrain.nn.fusion import link_bn_relu_pool

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason=f"compiled CPU kernels: {native.status()}")


def run(rng, shape, k, kernels, x=None, sync=None, blocked_conv=False):
    """(pooled output, input gradient, dgamma, dbeta, which path ran) of one linked run."""
    c = shape[1]
    be = backend.Backend(dtype=np.float32, kernels=kernels)
    bn, relu, pool = nn.BatchNorm(c), nn.ReLU(), nn.MaxPool2D(k)
    for layer in (bn, relu, pool):
        layer.backend = be
    bn.initialize(np.random.default_rng(0))
    assert link_bn_relu_pool([bn, relu, pool]) == 1
    bn.params["gamma"][...] = np.linspace(-1.2, 1.5, c)          # a negative and a zero-ish
    bn.params["beta"][...] = np.linspace(0.3, -0.4, c)
    bn.sync = sync
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32) if x is None else x
    y = bn.forward(x.copy(), True)
    path = "native" if bn._native_fused is not None else (
        "numpy" if bn._cpu_fused is not None else "unfused")
    dy = np.random.default_rng(5).standard_normal(y.shape).astype(np.float32)
    dx = bn.backward(dy)
    return y, dx, bn.grads["gamma"].copy(), bn.grads["beta"].copy(), path


@pytest.mark.parametrize("shape,k", [((3, 5, 6, 4), 2), ((2, 3, 9, 9), 3), ((64, 4, 8, 8), 2),
                                     ((1, 2, 2, 2), 2)])
def test_compiled_run_matches_the_numpy_path_in_float32(rng, shape, k):
    x = (rng.standard_normal(shape) * 2 + 1).astype(np.float32)
    ours = run(rng, shape, k, "auto", x)
    theirs = run(rng, shape, k, "generic", x)
    assert (ours[-1], theirs[-1]) == ("native", "numpy")
    for a, b, what in zip(ours[:4], theirs[:4], ("y", "dx", "dgamma", "dbeta")):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5, err_msg=what)


def test_ties_give_the_gradient_to_each_windows_first_element(rng):
    """A blank background: every window ties, so only its first element gets dz (as
    MaxPool2D's backward gives it), in both paths."""
    x = np.zeros((4, 2, 4, 4), np.float32)
    x[:, :, 0, 0] = 3.0                                      # the batch statistics are not 0/0
    ours, theirs = run(rng, x.shape, 2, "auto", x), run(rng, x.shape, 2, "generic", x)
    assert ours[-1] == "native"
    np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-5, atol=1e-6)


def test_nan_in_the_input_reaches_the_output(rng):
    x = (rng.standard_normal((2, 3, 4, 4))).astype(np.float32)
    x[1, 2, 3, 1] = np.nan
    y, *_ , path = run(rng, x.shape, 2, "auto", x)
    assert path == "native" and np.isnan(y[:, 2]).all() and np.isfinite(y[:, :2]).all()


def test_synchronised_statistics_post_what_the_numpy_path_posts(rng):
    """The sums reduced over the ranks (a recording stand-in for --sync-bn): the same posts,
    sizes and dtypes in the same order on both paths, so mixed ranks still match."""
    def recorder(log):
        def reduce(a):
            log.append((a.shape, a.dtype))
            return a
        return reduce
    ours, theirs = [], []
    run(rng, (3, 4, 6, 6), 2, "auto", sync=recorder(ours))
    run(rng, (3, 4, 6, 6), 2, "generic", sync=recorder(theirs))
    assert ours == theirs and len(ours) == 3


@pytest.mark.parametrize("kernels,path", [("auto", "native"), ("cpu_batchnorm", "native"),
                                          ("generic", "numpy"), ("cpu_conv", "numpy")])
def test_kernels_choice_selects_the_path(rng, kernels, path):
    assert run(rng, (2, 3, 4, 4), 2, kernels)[-1] == path


def test_whole_model_gradient_through_the_compiled_run(float64, rng, monkeypatch):
    """thesis-cnn at 16x16 with both linked runs compiled (float64 let in), the first one fed
    window offset first by conv_direct.py, against finite differences."""
    from dptrain import models
    from gradcheck import check_model
    for module in (native, fused_cpu, conv_direct):
        monkeypatch.setattr(module, "DTYPES", (np.float32, np.float64))
    model = models.get("thesis-cnn", input_shape=(1, 16, 16), seed=3)

    def paths(model):
        bns = [layer for layer in model.layers if isinstance(layer, nn.BatchNorm)]
        assert [bn._native_fused is not None for bn in bns] == [True, True]
        assert bns[0]._blocked is not None                    # conv0 -> BN, blocked
    check_model(model, rng.standard_normal((3, 1, 16, 16)), rng.integers(0, 10, 3), rng, paths)
