"""A gradient schedule is one class registered by name (parallel/schedules/): this file adds
one, defined here and nowhere else, and shows that every part of dptrain takes it: the --sync
choices and help, the configuration's check, the planner's candidates, DataParallel and the
trainer, with the parameters of the built-in schedule it is equivalent to. A class that
leaves a hook out is refused."""
import numpy as np
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.parallel import SCHEDULES, planner, schedules
from dptrain.parallel.schedules import Schedule


class ReduceThenUpdate(Schedule):
    """Reduce every bucket after backprop, in the opposite order to blocking's, and update at
    once (no update left pending: discard() cannot drop it, so not for --skip-nonfinite).
    Sums are per element, so the parameters equal blocking's bitwise."""
    name = "reduce-then-update"
    help = "a test schedule"

    def forward_hooks(self, communicate):
        return None, None

    def grad_ready(self, i):
        raise AssertionError("posts nothing during backprop")

    def empty_backward(self):
        pass

    def step_end(self, lr):
        dp = self.dp
        for b in reversed(dp.buckets):
            dp.prepare(b)
            with dp.guard(f"allreduce of bucket {b.index}", "step"):
                dp.comm.allreduce(b.wire)
            dp.unpack(b)
            dp.check_finite(b)
        dp.accumulated = None
        dp.optimizer.step(lr)

    def flush(self):
        pass

    def discard(self):
        pass

    def snapshot(self):
        return None

    def restore(self, state):
        pass


@pytest.fixture
def registered():
    schedules.register(ReduceThenUpdate)
    yield ReduceThenUpdate.name
    schedules.unregister(ReduceThenUpdate.name)


def train(sync, comm=None, **overrides):
    from dptrain.train import TrainConfig, Trainer
    cfg = dict(model="thesis-cnn", dataset="synthetic:1x28x28:48", dtype="float64", max_steps=3,
               batch_size=8, optimizer="momentum", lr=0.05, quiet=True, threads=1, sync=sync,
               bucket_mb=0.05)
    cfg.update(overrides)
    t = Trainer(TrainConfig(**cfg), comm=comm or LocalCommunicator())
    t.run()
    return t.model.state_dict()


def test_a_registered_schedule_is_a_choice_everywhere(registered):
    from dptrain.train import TrainConfig
    import argparse

    from dptrain.train_flags import add_train_flags
    assert registered in SCHEDULES and registered in planner.ORDER
    TrainConfig(model="mlp", dataset="synthetic:1x8x8:64", sync=registered).validate()
    parser = argparse.ArgumentParser()
    add_train_flags(parser, ["mlp"])
    help_text = "".join(parser.format_help().split())      # argparse wraps at hyphens
    assert "overlap-fc(alsoall-gatherslargeFClayers'activations)orreduce-then-update" \
           "(atestschedule)" in help_text


def test_an_unregistered_name_is_refused_with_the_choices():
    from dptrain.errors import UsageError
    from dptrain.train import TrainConfig
    with pytest.raises(UsageError, match="reduce-then-update"):
        TrainConfig(model="mlp", dataset="synthetic:1x8x8:64", sync="reduce-then-update").validate()


def test_it_trains_to_the_parameters_of_blocking(registered):
    got, want = train(registered), train("blocking")
    assert got.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_a_schedule_missing_a_hook_is_refused():
    class Incomplete(Schedule):
        name = "incomplete"

        def forward_hooks(self, communicate):
            return None, None

    with pytest.raises(TypeError, match="does not define .*step_end"):
        schedules.register(Incomplete)
    with pytest.raises(TypeError, match="abstract"):
        Incomplete(dp=None)
    assert "incomplete" not in schedules.names()
