"""--eval-every-steps under mpiexec: an evaluation inside an epoch settles the pending
reductions first (the overlapped schedules leave some in flight), so the training is the same
to the bit as without it, on every schedule; every rank evaluates at the same steps and
stops at the same one. Run with:
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_eval_within_epoch_mpi.py
"""
import numpy as np
import pytest

from dptrain.train import TrainConfig, Trainer
from test_data_parallel import world

BASE = dict(model="thesis-cnn", dataset="synthetic:1x28x28:200", dtype="float64", epochs=2,
            batch_size=24, optimizer="momentum", lr=0.05, quiet=True, threads=1, sync_bn=True)


def trained(**overrides):
    trainer = Trainer(TrainConfig(**{**BASE, **overrides}), comm=world())
    result = trainer.run()
    return trainer, result


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap", "overlap-fc"])
def test_evaluations_within_epochs_change_no_weight(sync):
    evaluated, _ = trained(sync=sync, eval_every_steps=2)
    plain, _ = trained(sync=sync)
    for (name, a), (_, b) in zip(evaluated.model.named_params(), plain.model.named_params()):
        assert np.array_equal(a, b), name


@pytest.mark.mpi(min_size=2)
def test_every_rank_stops_at_the_same_step_within_an_epoch():
    trainer, result = trained(sync="overlap", eval_every_steps=3, stop_at_accuracy=1e-9)
    steps = trainer.comm.allgather(np.array([result["steps"]]))
    assert np.ravel(steps).tolist() == [3] * trainer.size and result["test_accuracy"] >= 1e-9
