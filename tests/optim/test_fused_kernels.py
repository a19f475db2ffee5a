"""The flat optimiser: fused kernels (compiled with g++) and flat NumPy passes against the
per-parameter update of before.

The reference is the old ``Optimizer.update`` loop: each parameter on its own, the rule's
NumPy expressions, weight decay added first, ``t`` per parameter. The flat NumPy path must
equal it bitwise; the CUDA kernels, compiled for the CPU and run as one block of one thread
(tests/host_cuda.py's shim), within rounding. tests/nn/test_cuda_kernels.py compiles them
with nvcc, where installed, with the layers' kernels (one module).
"""
import numpy as np
import pytest

from dptrain import backend, models, nn, optim
from dptrain.backend import Backend
from dptrain.comm import build_buckets
from dptrain.optim import fused

RULES = [("sgd", {"lr": 0.1}), ("momentum", {"lr": 0.1}), ("nesterov", {"lr": 0.1}),
         ("adagrad", {"lr": 0.05}), ("rmsprop", {"lr": 0.01}), ("adadelta", {"lr": 1.0}),
         ("adam", {"lr": 1e-3}), ("adamax", {"lr": 2e-3})]
CASES = [(name, dict(kw, weight_decay=wd)) for name, kw in RULES for wd in (0.0, 0.01)]
STEPS = 4


@pytest.fixture(scope="session")
def optimizer_launcher(host_launcher):
    """dtype -> launcher running the kernels compiled for the CPU (tests/conftest.py), with
    the names of the optimiser kernels it launched in ``launches``."""
    launches = []

    def for_dtype(dtype):
        launch = host_launcher(dtype)

        def counted(name, n, *args):
            if name in fused.SIGNATURES:
                launches.append(name)
            launch(name, n, *args)
        return counted
    for_dtype.launches = launches
    return for_dtype


@pytest.fixture
def kernels_on(optimizer_launcher):
    """Route the flat update through the compiled kernels, as CuPy arrays are on a GPU."""
    fused.host_launcher = optimizer_launcher
    optimizer_launcher.launches.clear()
    try:
        yield optimizer_launcher.launches
    finally:
        fused.host_launcher = None


def odd_model(dtype, seed=0, kernels="auto"):
    """Odd sizes, several parameter kinds (dense, conv, batch norm), a parameterless layer."""
    return models.Sequential([nn.Conv2D(3, 5, 3, padding=1), nn.BatchNorm(5), nn.ReLU(),
                              nn.Flatten(), nn.Dense(5 * 7 * 7, 13), nn.ReLU(),
                              nn.Dense(13, 3)], (3, 7, 7), seed=seed,
                             backend=Backend(np, np.dtype(dtype).type, kernels))


def random_grads(model, step):
    rng = np.random.default_rng(100 + step)
    for _, g in model.named_grads():
        g[...] = rng.standard_normal(g.shape).astype(g.dtype)
        g.reshape(-1)[:2] = 0.0                      # zero gradients: AdaMax's max, Adam's moments


class PerParameter:
    """The update as it was: a loop over parameters, each with its own state and ``t``."""

    def __init__(self, opt, model):
        self.opt, self.model = opt, model
        self.w = {k: p.copy() for k, p in model.named_params()}
        self.state = {}

    def step(self):
        opt = self.opt
        for key, g in self.model.named_grads():
            w = self.w[key]
            if opt.weight_decay:
                g = g + opt.weight_decay * w
            st = self.state.setdefault(key, {"t": 0, **{s: np.zeros_like(w) for s in opt.slot_names}})
            st["t"] += 1
            opt.update_rule(w, g, st, opt.lr)


def check(model, ref, exact, dtype):
    tol = {np.float64: 1e-13, np.float32: 2e-6}[np.dtype(dtype).type]
    for key, p in model.named_params():
        if exact:
            np.testing.assert_array_equal(p, ref.w[key], err_msg=key)
        else:
            np.testing.assert_allclose(p, ref.w[key], rtol=tol, atol=tol, err_msg=key)


def against_reference(name, kw, dtype, exact):
    """STEPS flat updates of a model, each checked against the per-parameter reference."""
    model = odd_model(dtype)
    opt = optim.get(name, model, **kw)
    ref = PerParameter(optim.get(name, odd_model(dtype), **kw), model)
    for step in range(STEPS):
        random_grads(model, step)
        ref.step()
        opt.step()
        check(model, ref, exact=exact, dtype=dtype)
    return opt, ref


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-wd{kw['weight_decay']}" for n, kw in CASES])
def test_kernel_matches_the_per_parameter_update(kernels_on, dtype, name, kw):
    opt, ref = against_reference(name, kw, dtype, exact=False)
    assert kernels_on == [opt.kernel(1.0, 1)[0]] * STEPS        # one launch per step
    for key, st in ref.state.items():
        for s in opt.slot_names:
            np.testing.assert_allclose(opt.state[key][s], st[s], rtol=1e-5, atol=1e-12)
        assert opt.state[key]["t"] == st["t"] == STEPS


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-wd{kw['weight_decay']}" for n, kw in CASES])
def test_flat_numpy_update_is_bitwise_the_per_parameter_update(dtype, name, kw):
    against_reference(name, kw, dtype, exact=True)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name,kw", CASES, ids=[f"{n}-wd{kw['weight_decay']}" for n, kw in CASES])
def test_per_step_scalars_read_on_the_device_give_the_host_scalars_update(kernels_on, dtype,
                                                                         name, kw):
    """A replayed CUDA graph cannot take new scalars: the learning rate and Adam's and
    AdaMax's bias corrections are filled into a device array before each replay
    (train/graph_step.py, Optimizer.device_scalars) and the kernels read them there as
    ``dyn``. The result is bitwise the one of the same scalars given on the host."""
    host, device = odd_model(dtype), odd_model(dtype)
    opt_host, opt_device = optim.get(name, host, **kw), optim.get(name, device, **kw)
    dyn = np.ones(fused.DYNAMIC_SCALARS, dtype=dtype)
    for step in range(STEPS):
        for model in (host, device):
            random_grads(model, step)
        rate = kw["lr"] * (1.0 - 0.1 * step)                  # a schedule: a new lr each step
        opt_host.step(rate)
        values = opt_device.device_scalars(rate, step + 1)
        dyn[:len(values)] = values
        opt_device.step(dyn)
    for (key, a), (_, b) in zip(host.named_params(), device.named_params()):
        np.testing.assert_array_equal(a, b, err_msg=key)
    assert len(kernels_on) == 2 * STEPS


@pytest.mark.parametrize("name", ["adam", "adadelta", "nesterov"])
def test_buckets_rebuilt_between_steps_and_a_skipped_layer(float64, name):
    """Bucket-wise updates (one pass per bucket; a layer left out of the buckets, as
    overlap-fc leaves FC layers, gets its own), buckets regrouped between steps as the
    planner does: still the per-parameter result, and the parameters never move."""
    model = models.get("thesis-cnn", seed=3)
    opt = optim.get(name, model)
    ref = PerParameter(optim.get(name, models.get("thesis-cnn", seed=3)), model)
    arrays = [id(p) for _, p in model.named_params()]
    fc = max(i for i, layer in enumerate(model.layers) if layer.params)
    for step, layout in enumerate(["per layer", "fc apart", "none", "4 MB"]):
        if layout == "none":
            model.grad_layout = None            # no buckets: the optimiser flattens the gradients
        else:
            buckets = build_buckets(model, {"per layer": 1e-9, "fc apart": 0.05, "4 MB": 4.0}[layout],
                                    exclude={fc} if layout == "fc apart" else ())
        random_grads(model, step)
        ref.step()
        if layout == "none":
            opt.step()
        else:
            for b in buckets:
                opt.update_layers(b.layers)
            if layout == "fc apart":
                opt.update(fc)
        check(model, ref, exact=True, dtype=np.float64)
    assert [id(p) for _, p in model.named_params()] == arrays


def test_one_bucket_is_one_pass(kernels_on, float64):
    model = models.get("thesis-cnn", seed=0)
    buckets = build_buckets(model, 4.0)
    assert len(buckets) == 1
    opt = optim.get("adam", model)
    random_grads(model, 0)
    opt.update_layers(buckets[0].layers)
    assert kernels_on == ["adam"]
    opt.update_layers(buckets[0].layers[:2])               # a part of the bucket: one pass too
    assert kernels_on == ["adam"] * 2
    opt.step()                                              # t now differs: a pass per equal t
    assert kernels_on == ["adam"] * 4
    opt.update_layers(buckets[0].layers[2:])
    assert kernels_on == ["adam"] * 5
    assert {st["t"] for st in opt.state.values()} == {3}


def test_generic_kernels_leave_the_optimizer_to_numpy(kernels_on):
    optim.get("adam", odd_model(np.float64, kernels="generic")).step()
    assert kernels_on == []
    optim.get("adam", odd_model(np.float64, kernels="maxpool,optimizer")).step()
    assert kernels_on == ["adam"]
    with pytest.raises(ValueError, match="optimizer"):
        backend.set_kernels("optimiser")


def test_checkpoint_format_and_an_old_state_resume_bitwise(float64):
    """state_dict is per parameter ("layer.name", ``t`` each, slots in the parameter's
    shape), only for parameters updated so far; such a dict, written by the per-parameter
    optimiser, loads and continues exactly."""
    model = odd_model(np.float64)
    opt = optim.get("adam", model, lr=0.01)
    assert opt.state_dict()["state"] == {}
    ref = PerParameter(optim.get("adam", odd_model(np.float64), lr=0.01), model)
    for step in range(2):
        random_grads(model, step)
        ref.step()
    old = {"name": "adam", "lr": 0.01, "weight_decay": 0.0, "hyper": dict(opt.hyper),
           "state": {k: {s: (v if s == "t" else v.copy()) for s, v in st.items()}
                     for k, st in ref.state.items()}}
    for key, p in model.named_params():
        p[...] = ref.w[key]
    opt.load_state_dict(old)
    saved = opt.state_dict()["state"]
    assert saved.keys() == old["state"].keys()
    for key, st in old["state"].items():
        assert saved[key]["t"] == 2 and saved[key]["m"].shape == dict(model.named_params())[key].shape
        np.testing.assert_array_equal(saved[key]["v"], st["v"])
    random_grads(model, 2)
    ref.step()
    opt.step()
    check(model, ref, exact=True, dtype=np.float64)


def test_the_trainer_through_the_kernels_matches_numpy(kernels_on):
    """The whole single-rank trainer (buckets, blocking updates) with the fused kernels run
    where CuPy would run them: the NumPy run's parameters, within rounding."""
    from dptrain.comm.local import LocalCommunicator
    from dptrain.train import TrainConfig, Trainer
    cfg = dict(model="thesis-cnn", dataset="synthetic:1x28x28:96", dtype="float64", batch_size=24,
               optimizer="adam", lr=1e-3, quiet=True, threads=1, max_steps=4, bucket_mb=0.2)
    fused_run = Trainer(TrainConfig(**cfg), comm=LocalCommunicator())
    fused_run.run()
    assert len(kernels_on) == 4 * len(fused_run.dp.buckets) and set(kernels_on) == {"adam"}
    fused.host_launcher = None
    numpy_run = Trainer(TrainConfig(**cfg), comm=LocalCommunicator())
    numpy_run.run()
    want = numpy_run.model.state_dict()
    for k, v in fused_run.model.state_dict().items():
        np.testing.assert_allclose(v, want[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_a_numpy_scalar_learning_rate_is_a_host_scalar(kernels_on):
    """NumPy scalars have a shape too; only a 1-D array is a graph's device scalars."""
    a, b = odd_model(np.float32), odd_model(np.float32)
    opt_a, opt_b = optim.get("adam", a, lr=1e-3), optim.get("adam", b, lr=1e-3)
    for step in range(2):
        for model in (a, b):
            random_grads(model, step)
        opt_a.step(1e-3)
        opt_b.step(np.float64(1e-3))
    for (key, p), (_, q) in zip(a.named_params(), b.named_params()):
        np.testing.assert_array_equal(p, q, err_msg=key)
