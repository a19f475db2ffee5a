"""A model computes with the backend it is given (model.backend), whatever the process
default is; and it draws the same parameters as a model built under that default."""
import numpy as np
import pytest

from dptrain import backend, models
from dptrain.backend import Backend


@pytest.mark.parametrize("name", ["thesis-cnn", "resnet-small", "lenet5"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_given_backend_equals_the_default_it_replaces_bitwise(name, dtype):
    backend.set_dtype(np.dtype(dtype).name)              # the old way: the process default
    by_default = models.get(name, seed=4).state_dict()
    backend.set_dtype("float32" if dtype == np.float64 else "float64")   # and now another
    given = models.get(name, seed=4, backend=Backend(np, dtype))
    assert given.backend == Backend(np, dtype) and given.dtype == dtype
    state = given.state_dict()
    assert state.keys() == by_default.keys()
    for key, value in state.items():
        assert value.dtype == dtype, key                 # parameters and buffers (BN stats)
        assert value.tobytes() == by_default[key].tobytes(), key


def test_every_layer_holds_its_models_backend():
    b = Backend(np, np.float64, "generic")
    model = models.get("resnet-small", backend=b)
    assert all(layer.backend is b for layer in model.layers)
    assert models.get("mlp").backend == backend.current()
