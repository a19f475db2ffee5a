"""An optimiser added in one place: SignSGD below exists only in this file, and one decorator
makes it an optimiser of optim.get, of ``dptrain train --optimizer`` (choices and --help) and
of the trainer. It has no fused CUDA kernel, so where CuPy arrays would take the kernels (the
CPU stand-in of optim/fused.py) it runs its array code."""
import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

from dptrain import models, optim
from dptrain.backend import Backend
from dptrain.cli import build_parser
from dptrain.comm.local import LocalCommunicator
from dptrain.errors import UsageError
from dptrain.optim import fused
from dptrain.train import TrainConfig, Trainer

LR = 0.01
RUN = dict(model="mlp", dataset="synthetic:1x8x8:48", dtype="float64", batch_size=16,
           optimizer="sign-sgd", lr=LR, quiet=True, threads=1, max_steps=1, seed=3)


class SignSGD(optim.Optimizer):
    """w <- w - lr sign(g)."""
    name = "sign-sgd"

    def __init__(self, model, lr=0.01, weight_decay=0.0):
        super().__init__(model, lr, weight_decay)

    def update_rule(self, w, g, state, lr):
        w -= lr * np.sign(g)


@pytest.fixture
def sign_sgd():
    optim.register("sign-sgd", help="signed gradient descent")(SignSGD)
    try:
        yield SignSGD
    finally:
        optim.unregister("sign-sgd")


@pytest.fixture
def cuda_standin():
    """Arrays take the optimiser's fused kernels as CuPy arrays would (fused.host_launcher);
    the launcher records the kernels asked for instead of running them."""
    launched = []

    def launcher(dtype):
        return lambda name, *args: launched.append(name)
    fused.host_launcher = launcher
    try:
        yield launched
    finally:
        fused.host_launcher = None


def train_help() -> str:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"].format_help()


def test_registered_is_listed_and_built_by_name(sign_sgd):
    assert "sign-sgd" in optim.names() and optim.names() == sorted(optim.names())
    assert "adamax, sign-sgd" in " ".join(train_help().split())
    model = Trainer(TrainConfig(**RUN), comm=LocalCommunicator()).model
    assert type(optim.get("sign-sgd", model, lr=0.5)) is SignSGD
    with pytest.raises(ValueError, match="registered already"):
        optim.register("sign-sgd", lambda model, **kw: None)


def test_unregistered_is_a_usage_error_naming_the_choices(sign_sgd):
    optim.unregister("sign-sgd")
    try:
        assert "sign-sgd" not in train_help()
        with pytest.raises(UsageError, match=r"^--optimizer sign-sgd: unknown optimizer "
                           r"'sign-sgd' \(choose adadelta, adagrad, adam, adamax, momentum, "
                           r"nesterov, rmsprop, sgd\)$"):
            Trainer(TrainConfig(**RUN), comm=LocalCommunicator())
    finally:
        optim.register("sign-sgd")(SignSGD)


def one_step(**kw):
    """The parameters before and after one trainer step with SignSGD, and the trainer."""
    t = Trainer(TrainConfig(**{**RUN, **kw}), comm=LocalCommunicator())
    before = t.model.state_dict()
    t.run()
    return before, t.model.state_dict(), t


def test_the_trainer_steps_with_it(sign_sgd):
    before, after, t = one_step()
    assert type(t.opt) is SignSGD
    moved = 0
    for key, w in after.items():
        step = np.abs(w - before[key])             # lr or 0 (a zero gradient), per element
        assert np.all(np.isclose(step, LR, rtol=1e-9, atol=0) | (step == 0)), key
        moved += int(np.count_nonzero(step))
    assert moved > 0.5 * sum(w.size for w in after.values())


def test_without_a_kernel_it_runs_its_array_code_where_the_kernels_would_run(sign_sgd,
                                                                          cuda_standin):
    w = np.zeros(4)
    model = Trainer(TrainConfig(**RUN), comm=LocalCommunicator()).model
    assert optim.get("adam", model).fused_launcher(w) is not None     # the stand-in is on
    assert optim.get("sign-sgd", model).fused_launcher(w) is None
    _, standin, _ = one_step()
    assert cuda_standin == []                      # no fused kernel asked for
    fused.host_launcher = None
    _, plain, _ = one_step()
    for key, w in plain.items():
        np.testing.assert_array_equal(standin[key], w, err_msg=key)


def test_the_kernel_choice_is_the_models_backends(cuda_standin):
    """Not the process default's: a model built with --kernels generic's backend keeps the
    fused update out, one with the optimizer family takes it."""
    w = np.zeros(4)
    for kernels, fused_update in (("generic", False), ("maxpool,optimizer", True)):
        model = models.get("mlp", (1, 8, 8), 10, backend=Backend(np, np.float64, kernels))
        assert model.backend.kernels == kernels and model.dtype == np.float64
        assert (optim.get("adam", model).fused_launcher(w) is not None) == fused_update


def graph_trainer(*args, **kw):
    """tests/train/test_graph_step.py's trainer: --cuda-graph on through the stand-in for
    CUDA stream capture, which replays device work only."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "train"))
    from test_graph_step import trainer
    return trainer(*args, **kw)


def test_a_captured_step_replays_its_array_code(sign_sgd, tmp_path, monkeypatch):
    eager = graph_trainer(tmp_path, False, name="eager", optimizer="sign-sgd", max_steps=4)
    eager.run()
    graphed = graph_trainer(tmp_path, True, monkeypatch, name="graph", optimizer="sign-sgd",
                            max_steps=4)
    graphed.run()
    assert graphed.graph.disabled is None and graphed.graph.launches == 3
    for key, w in eager.model.state_dict().items():
        np.testing.assert_array_equal(graphed.model.state_dict()[key], w, err_msg=key)


def test_a_rule_reading_the_step_count_without_a_kernel_is_not_captured(tmp_path, monkeypatch):
    class CountedSignSGD(SignSGD):
        """w <- w - lr/t sign(g): t read on the host, frozen in a replayed graph."""
        name, reads_step_count = "counted-sign-sgd", True

        def update_rule(self, w, g, state, lr):
            w -= lr / state["t"] * np.sign(g)
    optim.register("counted-sign-sgd")(CountedSignSGD)
    try:
        t = graph_trainer(tmp_path, True, monkeypatch, optimizer="counted-sign-sgd", max_steps=3)
        t.run()
    finally:
        optim.unregister("counted-sign-sgd")
    assert "counted-sign-sgd's bias correction" in t.graph.disabled
    assert t.capture.captures == 0
