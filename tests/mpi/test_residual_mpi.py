"""Residual networks under mpiexec (-n 2 and -n 4): P ranks give the parameters of one rank
(float64) for every schedule, with --sync-bn inside the blocks, gradient buckets of one layer
and of several, FC replication, and resume. Tiny inputs keep it fast. Run with:
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_residual_mpi.py
"""
import numpy as np
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.train import TrainConfig, Trainer
from test_data_parallel import assert_same, world

# resnet-small: a stem, an identity block and two projection blocks (BatchNorm in every
# branch and shortcut), global average pooling, FC; on 8x8 inputs
RESNET = dict(model="resnet-small", dataset="synthetic:1x8x8:120", dtype="float64", sync_bn=True,
              batch_size=24, max_steps=5, optimizer="adam", lr=1e-3, quiet=True, threads=1)


def trained(comm, **overrides):
    trainer = Trainer(TrainConfig(**{**RESNET, **overrides}), comm=comm)
    trainer.run()
    return trainer


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap", "overlap-fc"])
@pytest.mark.parametrize("bucket_mb", [1e-9, 0.02])       # one layer per bucket / several
def test_resnet_rank_count_and_schedule_invariance(sync, bucket_mb):
    kw = dict(sync=sync, bucket_mb=bucket_mb, fc_replicate="all")
    reference = trained(LocalCommunicator(), **kw).model.state_dict()
    t = trained(world(), **kw)
    assert_same(t.model.state_dict(), reference)
    layers_per_bucket = [len(b.layers) for b in t.dp.buckets]
    if bucket_mb < 1e-6:
        assert set(layers_per_bucket) == {1}
    else:
        assert max(layers_per_bucket) > 1
    # the buckets cut the parametrised leaves into runs of decreasing index (backprop order)
    order = [i for b in t.dp.buckets for i in b.layers]
    assert order == sorted(order, reverse=True)
    if sync == "overlap-fc":
        assert t.dp.fc is not None and t.dp.fc.layers == [len(t.model.layers) - 1]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_resnet20_rank_count_invariance(sync, timing):
    """ResNet-20 itself (63 leaves, nine blocks), on 3x8x8 inputs, two steps."""
    kw = dict(model="resnet-20", dataset="synthetic:3x8x8:60", batch_size=12, max_steps=2,
              sync=sync)
    assert_same(trained(world(), **kw).model.state_dict(),
                trained(LocalCommunicator(), **kw).model.state_dict())


@pytest.mark.mpi(min_size=2)
def test_resnet_last_batch_smaller_than_rank_count():
    """Ranks with an empty slice still run the empty batch through every block (sync-bn)."""
    kw = dict(dataset="synthetic:1x8x8:151", sync="overlap", max_steps=8)
    assert_same(trained(world(), **kw).model.state_dict(),
                trained(LocalCommunicator(), **kw).model.state_dict())


@pytest.mark.mpi(min_size=2)
def test_resnet_resume_is_bitwise_identical(tmp_path_factory):
    c = world()
    d = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    kw = dict(sync="overlap", max_steps=None, dataset="synthetic:1x8x8:72")
    straight = trained(c, epochs=3, **kw).model.state_dict()
    trained(c, epochs=1, checkpoint_dir=d, **kw)
    resumed = trained(c, epochs=3, checkpoint_dir=d, resume=True, **kw).model.state_dict()
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


@pytest.mark.mpi(min_size=2)
def test_resnet_with_the_automatic_schedule_and_buckets():
    """The defaults, --sync auto --bucket-mb auto: timed rehearsals, a plan from rank 0, and
    still the parameters of one rank."""
    kw = dict(sync="auto", bucket_mb="auto")
    t = trained(world(), **kw)
    assert t.dp.auto is not None and t.dp.auto.plan is not None
    order = [i for b in t.dp.buckets for i in b.layers]
    assert order == sorted(order, reverse=True)
    assert_same(t.model.state_dict(), trained(LocalCommunicator(), **kw).model.state_dict())


def residual_mlp(input_shape, num_classes):
    """Dense layers inside a branch and a projection shortcut: FC replication there."""
    from dptrain import nn
    n = int(np.prod(input_shape))
    return [nn.Flatten(), nn.Dense(n, 32), nn.ReLU(),
            nn.Residual([nn.Dense(32, 48), nn.ReLU(), nn.Dense(48, 40)], [nn.Dense(32, 40)]),
            nn.ReLU(), nn.Residual([nn.BatchNorm(40), nn.Dense(40, 40)]),
            nn.Dense(40, num_classes)]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["overlap", "overlap-fc"])
def test_fc_replication_inside_branches_and_shortcuts(sync, monkeypatch):
    from dptrain.models import zoo
    monkeypatch.setitem(zoo.BUILDERS, "residual-mlp", residual_mlp)
    kw = dict(model="residual-mlp", sync=sync, fc_replicate="all", bucket_mb=1e-9)
    t = trained(world(), **kw)
    if sync == "overlap-fc":                  # every Dense, inside the blocks too
        assert t.dp.fc.layers == [1, 3, 5, 6, 9, 10]
    assert_same(t.model.state_dict(), trained(LocalCommunicator(), **kw).model.state_dict())
