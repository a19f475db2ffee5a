"""The zoo, summary counts, the Sequential contract and weights round trips."""
import numpy as np
import pytest

from dptrain import models, nn
from dptrain.nn import BatchContext


def test_thesis_cnn_has_160490_parameters():
    model = models.get("thesis-cnn")
    assert model.num_params() == 160_490
    s = model.summary()
    assert s.total_params == 160_490
    assert s.rows[0].output_shape == (32, 24, 24) and s.rows[8].output_shape == (512,)
    # conv1: 24*24*32 outputs, each 25 multiply-adds and a bias
    assert s.rows[0].flops == 24 * 24 * 32 * (2 * 25 + 1)
    assert s.rows[9].flops == 2 * 512 * 256 + 256


@pytest.mark.parametrize("name,params", [
    ("mlp", 784 * 256 + 256 + 256 * 256 + 256 + 2570),
    ("mlp-wide", 784 * 4096 + 4096 + 4096 * 4096 + 4096 + 40970),
    ("lenet5", 61_706),
])
def test_zoo_parameter_counts(name, params):
    assert models.get(name).num_params() == params


def test_vgg_cifar_runs_on_32x32x3(rng):
    model = models.get("vgg-cifar")
    assert model.input_shape == (3, 32, 32)
    y = model.forward(rng.random((2, 3, 32, 32), dtype=np.float32), train=False)
    assert y.shape == (2, 10)


def test_unknown_model_and_misfit_shape():
    with pytest.raises(ValueError, match="unknown model 'resnet'"):
        models.get("resnet")
    with pytest.raises(ValueError, match="does not fit input shape"):
        models.get("thesis-cnn", input_shape=(1, 8, 8))


def test_on_grad_ready_reverse_order_and_only_parametrised_layers(rng):
    model = models.get("thesis-cnn", seed=0)
    x = rng.random((4, 1, 28, 28), dtype=np.float32)
    loss = nn.SoftmaxCrossEntropy()
    loss.forward(model.forward(x, True, BatchContext(np.arange(4), 0)), np.arange(4))
    ready = []
    model.backward(loss.backward(), on_grad_ready=ready.append)
    assert ready == [12, 9, 5, 4, 1, 0]


def test_before_layer_hook_runs_before_each_layer(rng):
    model = models.get("mlp")
    seen = []
    model.forward(rng.random((2, 1, 28, 28), dtype=np.float32), before_layer=seen.append)
    assert seen == list(range(len(model.layers)))


def test_state_dict_round_trip_and_names(rng):
    a, b = models.get("thesis-cnn", seed=1), models.get("thesis-cnn", seed=2)
    state = a.state_dict()
    assert "0.W" in state and "1.running_mean" in state and "12.b" in state
    b.load_state_dict(state)
    for (k, pa), (_, pb) in zip(a.named_params(), b.named_params()):
        np.testing.assert_array_equal(pa, pb, err_msg=k)
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({k: v for k, v in state.items() if k != "0.W"})
    bad = dict(state, **{"0.W": np.zeros((1, 1))})
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict(bad)


def test_same_seed_same_parameters_on_every_rank():
    a, b = models.get("vgg-cifar", seed=5), models.get("vgg-cifar", seed=5)
    assert all(np.array_equal(pa, pb) for (_, pa), (_, pb) in zip(a.named_params(), b.named_params()))
