"""The flat optimiser updates the parameters through one buffer (nn/flat.py) whose views
are the layers' ``params``: whatever shares, loads or restores parameters must write into
those views, never rebind them, or an update (and a captured CUDA graph) would silently miss
the model. The loading paths are walked here on one rank; FC replication (several ranks only)
is held to the blocking schedule's parameters by tests/mpi/test_data_parallel.py."""
import numpy as np

from dptrain import models, nn, optim
from dptrain.comm.local import LocalCommunicator
from dptrain.parallel import DataParallel
from dptrain.train import checkpoint, setup


def assert_params_are_flat_views(model):
    flat, entries = model.param_flat
    assert len(entries) == sum(len(layer.params) for layer in model.layers)
    for i, name, offset, size, shape in entries:
        p = model.layers[i].params[name]
        assert p.shape == shape and np.shares_memory(p, flat), f"{i}.{name} is no longer a view"
        assert np.array_equal(p.reshape(-1), flat[offset:offset + size]), f"{i}.{name}"


def test_parameters_stay_views_of_the_flat_buffer_through_every_load(tmp_path):
    model = models.get("thesis-cnn", seed=0)
    opt = optim.get("adam", model)
    dp = DataParallel(model, LocalCommunicator(), schedule="blocking")
    dp.broadcast_parameters()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, *model.input_shape)).astype(model.dtype)
    y = rng.integers(0, model.shapes[-1][0], 4)
    loss = nn.SoftmaxCrossEntropy()
    for _ in range(2):
        dp.train_step(x, y, loss, opt)
    dp.flush()
    assert_params_are_flat_views(model)

    setup.save_weights(model, str(tmp_path / "w.npz"))
    setup.load_weights(model, str(tmp_path / "w.npz"))
    assert_params_are_flat_views(model)
    path = checkpoint.save(tmp_path / "ckpt", 2, model, opt, {})
    checkpoint.restore(checkpoint.read(path), model, opt)
    assert_params_are_flat_views(model)

    # and an update still reaches the model through the buffer
    before = model.state_dict()
    dp.train_step(x, y, loss, opt)
    dp.flush()
    assert_params_are_flat_views(model)
    after = model.state_dict()
    assert all(not np.array_equal(before[k], after[k]) for k, _ in model.named_params())
