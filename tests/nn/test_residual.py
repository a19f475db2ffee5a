"""nn.Residual: backprop against finite differences (float64), the flat leaf order the
data-parallel hooks rely on, shapes, fusion boundaries, and layers that never write into the
arrays a residual sum hands to two sub-graphs."""
import numpy as np
import pytest

from dptrain import models, nn
from dptrain.model_check import gradients
from dptrain.models.sequential import Sequential
from dptrain.nn import BatchContext
from gradcheck import numeric_grad, rel_error


def bn_conv(c_in, c_out, k=3, stride=1):
    return [nn.Conv2D(c_in, c_out, k, stride=stride, padding=k // 2, bias=False), nn.BatchNorm(c_out)]


def identity_block(c):
    return nn.Residual([*bn_conv(c, c), nn.ReLU(), *bn_conv(c, c)])


def projection_block(c_in, c_out):
    return nn.Residual([*bn_conv(c_in, c_out, stride=2), nn.Tanh(), *bn_conv(c_out, c_out)],
                       bn_conv(c_in, c_out, k=1, stride=2))


def nested_block(c):
    """A residual inside a branch, and one inside a projection shortcut."""
    return nn.Residual([nn.Conv2D(c, c, 3, padding=1), nn.Residual([nn.Tanh(), nn.Conv2D(c, c, 1)])],
                       [nn.Residual([nn.Conv2D(c, c, 1)]), nn.Conv2D(c, c, 1)])


BLOCKS = {"identity": lambda: identity_block(3), "projection": lambda: projection_block(3, 4),
          "nested": lambda: nested_block(3)}


def check_model(model, x, rng, tol=1e-6):
    """dL/dx and every dL/dparam of L = sum(model(x) * R) against central differences."""
    ctx = BatchContext(np.arange(len(x)), step=0)
    r = rng.standard_normal((len(x),) + model.output_shape)

    def f():
        return float((model.forward(x, True, ctx) * r).sum())
    f()
    dx = model.backward(r)
    grads = {k: g.copy() for k, g in model.named_grads()}
    errors = {}
    idx, num = numeric_grad(f, x, rng)
    errors["x"] = rel_error(dx.reshape(-1)[idx], num)
    for name, p in model.named_params():
        idx, num = numeric_grad(f, p, rng)
        analytic = grads[name].reshape(-1)[idx]
        # a bias followed by BatchNorm has an exactly zero gradient: compare absolutely
        errors[name] = 0.0 if np.abs(analytic - num).max() < 1e-8 else rel_error(analytic, num)
    bad = {k: v for k, v in errors.items() if not v < tol}
    assert not bad, f"relative errors {bad}"


@pytest.mark.parametrize("kind,kernel_path", [
    ("identity", "generic"), ("identity", "cuda-kernels"), ("projection", "generic"),
    ("projection", "cuda-kernels"), ("nested", "generic")], indirect=["kernel_path"])
def test_residual_block_gradients(float64, rng, kernel_path, kind):
    """The block alone (first in its model, so the input gradient is computed too)."""
    model = Sequential([BLOCKS[kind]()], (3, 6, 6), seed=1)
    for name, p in model.named_params():          # move batch norms off their identity
        if name.endswith(("gamma", "beta")):
            p[...] = rng.uniform(0.5, 1.5, p.shape)
    check_model(model, rng.standard_normal((3, 3, 6, 6)), rng)


def test_whole_resnet_gradient(float64, rng, kernel_path, monkeypatch):
    """resnet-small on 1x8x8: stem, identity and projection blocks, pooling, FC."""
    if kernel_path == "cuda-kernels":            # the kernels' CPU build is slow: fewer entries
        monkeypatch.setattr(gradients, "MAX_ENTRIES", 3)   # the package's module, which _entries reads
    model = models.get("resnet-small", input_shape=(1, 8, 8), seed=3)
    model.layers[0].needs_input_grad = True
    check_model(model, rng.standard_normal((3, 1, 8, 8)), rng)


def test_leaves_are_numbered_in_execution_order_and_backward_strictly_decreases(rng):
    model = Sequential([nn.Conv2D(1, 2, 3, padding=1), nested_block(2), projection_block(2, 3),
                        nn.GlobalAvgPool(), nn.Dense(3, 2)], (1, 6, 6))
    assert [layer.index for layer in model.layers] == list(range(len(model.layers)))
    assert dict(model.named_params()).keys() == {f"{i}.{k}" for i, layer in enumerate(model.layers)
                                                 for k in layer.params}
    fwd, bwd, ready = [], [], []
    y = model.forward(rng.standard_normal((2, 1, 6, 6)), True, before_layer=fwd.append)
    model.backward(np.ones_like(y), before_layer=bwd.append, on_grad_ready=ready.append)
    assert fwd == list(range(len(model.layers)))
    assert bwd == list(range(len(model.layers) - 1, -1, -1))
    assert ready == [i for i in bwd if model.layers[i].params]
    # the nested block's leaves: branch [conv, [tanh, conv]] then shortcut [[conv], conv]
    assert [type(model.layers[i]).__name__ for i in range(1, 6)] == \
        ["Conv2D", "Tanh", "Conv2D", "Conv2D", "Conv2D"]
    assert model.input_shapes[4] == (2, 6, 6) and model.shapes[-1] == (2,)
    # the projection's shortcut conv takes the block's input, not the branch's output
    shortcut_conv = model.layers[11]
    assert shortcut_conv.kh == 1 and model.input_shapes[11] == (2, 6, 6)
    assert model.shapes[11] == (3, 3, 3) and model.input_shapes[13] == (3, 3, 3)


def test_a_sum_of_different_shapes_names_the_block_and_both_shapes():
    with pytest.raises(ValueError, match=r"residual block \(layers 1-1\): the branch gives "
                                         r"\(4, 3, 3\) but the identity shortcut gives \(2, 6, 6\)"):
        Sequential([nn.Conv2D(1, 2, 3, padding=1),
                    nn.Residual([nn.Conv2D(2, 4, 3, stride=2, padding=1)])], (1, 6, 6))
    with pytest.raises(ValueError, match=r"branch gives \(4, 3, 3\) but the shortcut gives "
                                         r"\(4, 6, 6\)"):
        Sequential([nn.Residual([nn.Conv2D(2, 4, 3, stride=2, padding=1)], [nn.Conv2D(2, 4, 1)])],
                   (2, 6, 6))


def test_the_zoo_reports_a_misfit_residual_as_not_fitting_the_input(monkeypatch):
    from dptrain.models import zoo
    monkeypatch.setitem(zoo.BUILDERS, "bad-resnet", lambda shape, n: [
        nn.Residual([nn.Conv2D(shape[0], 4, 3, padding=1)]), nn.GlobalAvgPool(), nn.Dense(4, n)])
    monkeypatch.setitem(zoo.DEFAULT_INPUT, "bad-resnet", (1, 8, 8))
    with pytest.raises(ValueError, match=r"model 'bad-resnet' does not fit input shape \(1, 8, 8\): "
                                         r"residual block \(layers 0-0\)"):
        models.get("bad-resnet")


def test_containers_accept_nested_lists_and_refuse_what_is_no_layer():
    a, b, c = nn.ReLU(), nn.Tanh(), nn.Sigmoid()
    model = Sequential([a, [b, [c]]], (3,))
    assert model.layers == [a, b, c] and model.structure == [a, b, c]
    with pytest.raises(TypeError, match="is not a dptrain.nn layer"):
        nn.Residual([nn.ReLU(), "relu"])
    with pytest.raises(ValueError, match="at least one layer"):
        nn.Residual([])
    shared = nn.Conv2D(2, 2, 3, padding=1)
    with pytest.raises(ValueError, match="appears twice"):
        Sequential([shared, nn.Residual([shared])], (2, 4, 4))


def test_only_leading_leaves_skip_the_input_gradient():
    stem = [nn.ReLU(), nn.Conv2D(1, 2, 3, padding=1)]
    block = identity_block(2)
    Sequential([*stem, block, nn.Flatten(), nn.Dense(2 * 4 * 4, 2)], (1, 4, 4))
    assert [layer.needs_input_grad for layer in stem] == [False, False]
    assert all(leaf.needs_input_grad for leaf in block.leaves())
    # a parametrised residual first: every leaf inside passes its gradient on to the sum
    first = identity_block(1)
    Sequential([nn.ReLU(), first, nn.Flatten()], (1, 4, 4))
    assert all(leaf.needs_input_grad for leaf in first.leaves())


def test_fusion_links_only_within_one_chain():
    """BN -> ReLU -> MaxPool2D inside a branch is linked; a branch ending in BN -> ReLU with
    the pooling after the sum is not (the pool's input is the sum, not the ReLU's output)."""
    inner = [nn.BatchNorm(2), nn.ReLU(), nn.MaxPool2D(1)]
    across = [nn.BatchNorm(2), nn.ReLU()]
    pool = nn.MaxPool2D(2)
    Sequential([nn.Conv2D(1, 2, 3, padding=1), nn.Residual(inner),
                nn.Residual(across), pool], (1, 4, 4))
    assert inner[0].fused_tail == (inner[1], inner[2])
    assert across[0].fused_tail is None
    # nor across a branch / shortcut boundary
    bn, relu, shortcut_pool = nn.BatchNorm(2), nn.ReLU(), nn.MaxPool2D(1)
    Sequential([nn.Conv2D(1, 2, 3, padding=1), nn.Residual([bn, relu], [shortcut_pool])],
               (1, 4, 4))
    assert bn.fused_tail is None


# (build, per-sample input shape, reaches a CUDA kernel)
WITH_KERNELS = [
    (lambda: nn.Conv2D(2, 3, 3, padding=1), (2, 5, 5)), (lambda: nn.BatchNorm(2), (2, 4, 4)),
    (lambda: nn.MaxPool2D(2), (2, 4, 4)), (lambda: identity_block(3), (3, 4, 4)),
    (lambda: projection_block(3, 4), (3, 4, 4)),
    (lambda: [nn.BatchNorm(2), nn.ReLU(), nn.MaxPool2D(2)], (2, 4, 4)),      # fused
]
LAYERS = [(make, shape, path) for make, shape in WITH_KERNELS for path in ("generic", "cuda-kernels")]
LAYERS += [(make, shape, "generic") for make, shape in [
    (lambda: nn.Dense(4, 3), (4,)), (lambda: nn.BatchNorm(4), (4,)),
    (lambda: nn.AvgPool2D(2), (2, 4, 4)),
    (lambda: nn.GlobalAvgPool(), (2, 4, 4)), (lambda: nn.Flatten(), (2, 3, 3)),
    (lambda: nn.Dropout(0.3), (5,)), (lambda: nn.ReLU(), (2, 3, 3)),
    (lambda: nn.LeakyReLU(), (5,)), (lambda: nn.PReLU(2), (2, 3, 3)), (lambda: nn.ELU(), (5,)),
    (lambda: nn.Sigmoid(), (5,)), (lambda: nn.Tanh(), (5,)), (lambda: nn.Softplus(), (5,))]]


@pytest.mark.parametrize("make,shape,kernel_path", LAYERS, indirect=["kernel_path"])
def test_no_layer_writes_into_its_input_or_output_gradient(float64, rng, kernel_path, make, shape):
    """A residual sum passes the same dy to its shortcut and its branch, and the same x to
    both: a layer that wrote into either would corrupt the other sub-graph."""
    model = Sequential([nn.ReLU(), make()], shape, seed=0)   # the ReLU: the layer is not first
    x = rng.standard_normal((3,) + shape)
    x_before = x.copy()
    ctx = BatchContext(np.arange(3), step=0)
    y = model.forward(x, True, ctx)
    dy = rng.standard_normal(y.shape)
    dy_before = dy.copy()
    model.backward(dy)
    np.testing.assert_array_equal(x, x_before)
    np.testing.assert_array_equal(dy, dy_before)


def test_summary_shows_the_nesting_and_counts_the_sums():
    model = models.get("resnet-20")
    s = model.summary()
    assert s.total_params == model.num_params() == 272_474
    assert len(s.rows) == len(model.layers) and len(s.sums) == 9
    text = str(s)
    assert text.count("branch + identity shortcut") == 7
    assert text.count("branch + projection shortcut") == 2
    assert text.count("shortcut:") == 2 and text.count("+ sum") == 9
    # a leaf inside a block is indented under its block's line
    block = next(line for line in text.splitlines() if "residual (layers 3-7)" in line)
    conv = next(line for line in text.splitlines() if line.startswith("  3  "))
    assert conv.index("Conv2D") > block.index("residual")
    d = s.as_dict()
    assert [b["layers"] for b in d["residual_sums"][:1]] == [[3, 7]]
    assert d["residual_sums"][3]["shortcut"] == "projection"
    # the sums add one (64, 8, 8)-sized activation each in the last stage
    assert s.sums[-1].activation_bytes == 64 * 8 * 8 * 4 and s.sums[-1].flops == 64 * 8 * 8


@pytest.mark.parametrize("name", models.names())
def test_the_parameter_estimate_walks_containers(name):
    from dptrain.train.validate import estimate_params
    if name == "vgg-a":
        pytest.skip("129 M parameters: estimated only")
    assert estimate_params(name, models.zoo.DEFAULT_INPUT[name], 10) == models.get(name).num_params()


def test_the_start_up_fingerprint_sees_the_nesting():
    """Ranks whose models have the same leaves nested differently compute different sums: the
    start-up comparison must tell them apart."""
    from dptrain.train.fingerprint import model_fields

    def build(nested):
        convs = [nn.Conv2D(2, 2, 3, padding=1, bias=False) for _ in range(2)]
        items = [nn.Residual(convs)] if nested else [nn.Residual(convs[:1]), convs[1]]
        return Sequential(items, (2, 4, 4), seed=0)
    assert build(True).layout() == "Residual(Conv2D;Conv2D|)"
    assert model_fields(build(True), "m") != model_fields(build(False), "m")
    chain = models.get("mlp")
    assert chain.layout() == ";".join(type(layer).__name__ for layer in chain.layers)
