"""The hierarchical reduction under mpiexec: sums, identical bits on every rank, no deadlock
when ranks poll in different orders or block in other collectives, and the collective-order
check over the node and cross communicators. On one host, DPTRAIN_TEST_RANKS_PER_NODE makes
nodes of consecutive ranks (comm/topology.py); -n 4 gives 2 nodes x 2 ranks."""
import numpy as np
import pytest

from dptrain.comm import hierarchical, order_check
from dptrain.comm.mpi import MPICommunicator
from dptrain.comm.topology import TEST_ENV


def _world():
    return MPICommunicator()


@pytest.fixture
def two_per_node(monkeypatch):
    monkeypatch.setenv(TEST_ENV, "2")


def _build(mode="hierarchical", check="strict"):
    channels = []
    comm, layout = hierarchical.over(_world(), mode, lambda c: order_check.checked(c, check, channels))
    return order_check.checked(comm, check, channels), layout, channels


@pytest.mark.mpi(min_size=4)
def test_sums_equal_the_flat_sum_with_the_same_bits_on_every_rank(two_per_node):
    comm, layout, _ = _build()
    size = comm.size
    assert layout.nodes == size // 2 and layout.two_level
    assert isinstance(order_check.unchecked(comm), hierarchical.HierarchicalCommunicator)
    flat = _world()
    for n in (1, 3, 1000, 4097, 250_001):          # fewer elements than ranks per node, odd sizes
        rng = np.random.default_rng([n, comm.rank])
        mine = rng.standard_normal(n)
        got, want = mine.copy(), mine.copy()
        comm.allreduce(got)
        flat.allreduce(want)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        every = flat.allgather(got)
        assert (every == every[0]).all(), "replicas differ in their bits"


@pytest.mark.mpi(min_size=4)
@pytest.mark.parametrize("layout", ["2", "cyclic:2"])
def test_many_in_flight_while_ranks_poll_in_their_own_order_and_block_elsewhere(layout, monkeypatch):
    """Stages 2 and 3 are posted by the driver, not by test()/wait(): a rank that blocks in a
    flat collective before waiting (here: odd ranks) must not hold its peers' stages back.
    Under the strict order check every post is a blocking collective: with ranks dealt to the
    nodes in turn, posts made in order of completion waited on each other in a circle."""
    monkeypatch.setenv(TEST_ENV, layout)
    comm, _, _ = _build()
    flat = _world()
    rng = np.random.default_rng(comm.rank)
    bufs = [np.full(1000 + 37 * k, float(comm.rank + k)) for k in range(24)]
    handles = [comm.iallreduce(b) for b in bufs]
    token = np.array([comm.rank], dtype=np.float64)
    if comm.rank % 2:
        flat.allreduce(token)                      # blocks until the even ranks join
    for i in rng.permutation(len(handles)):        # every rank tests in its own order
        handles[i].test()
    if comm.rank % 2 == 0:
        for i in rng.permutation(len(handles)):
            handles[i].wait()
        flat.allreduce(token)
    for h in handles:
        h.wait()
    total = sum(range(comm.size))
    for k, b in enumerate(bufs):
        np.testing.assert_array_equal(b, total + comm.size * k)


@pytest.mark.mpi(min_size=4)
def test_order_check_covers_the_node_and_cross_communicators(two_per_node):
    comm, _, channels = _build(check=1)            # fingerprints compared by verify()
    assert len(channels) >= 4                      # node, cross, gather, world
    buf = np.ones(64)
    comm.allreduce(buf)
    comm.verify()                                  # agreed: every channel matches
    with order_check.labelled(f"bucket of rank {comm.rank}"):   # differs on every rank
        comm.allreduce(buf)
    with pytest.raises(order_check.CollectiveOrderError, match="channel 0"):
        comm.verify()


@pytest.mark.mpi(min_size=2)
def test_one_rank_per_node_stays_flat(monkeypatch):
    monkeypatch.setenv(TEST_ENV, "1")
    comm, layout, _ = _build("auto")
    assert not isinstance(order_check.unchecked(comm), hierarchical.HierarchicalCommunicator)
    assert layout.nodes == comm.size and layout.why_flat() == "one rank per node"


@pytest.mark.mpi(min_size=4)
@pytest.mark.parametrize("sync", ["blocking", "overlap", "overlap-fc"])
def test_training_with_the_hierarchical_reduction_equals_one_rank(two_per_node, sync):
    from dptrain.comm.local import LocalCommunicator
    from dptrain.train import TrainConfig, Trainer

    def train(comm, **extra):
        cfg = dict(model="thesis-cnn", dataset="synthetic:1x28x28:128", dtype="float64",
                   max_steps=4, batch_size=32, lr=0.05, quiet=True, threads=1, **extra)
        trainer = Trainer(TrainConfig(**cfg), comm=comm)
        trainer.run()
        return trainer.model.state_dict()

    world = order_check.checked(_world(), order_check.mode_from_env())
    got = train(world, sync=sync, reduction="hierarchical", bucket_mb=0.01)
    want = train(LocalCommunicator())
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-9, atol=1e-12, err_msg=k)


@pytest.mark.mpi(min_size=4)
def test_a_resumed_run_sums_each_bucket_as_the_checkpointed_plan_did(monkeypatch, tmp_path_factory):
    """The resumed run measures a link on which flat wins everywhere; it must still reduce
    hierarchically, as the run it continues did (the lines travel in the plan). Ranks are
    dealt to the nodes in turn, so the two reductions sum in different orders."""
    monkeypatch.setenv(TEST_ENV, "cyclic:2")
    from dptrain.comm.emulated import AlphaBeta
    from dptrain.train import TrainConfig, Trainer

    def lines(hier):
        def measure(comm, flat_link, xp=np, timer=None):
            choice = hierarchical.choice_of(comm)
            choice.flat, choice.hier = AlphaBeta(1e-5, 1e9), hier
            return choice
        monkeypatch.setattr(hierarchical, "measure", measure)

    def train(**extra):
        cfg = dict(model="thesis-cnn", dataset="synthetic:1x28x28:96", dtype="float64",
                   batch_size=24, lr=0.05, quiet=True, threads=1, max_steps=None, **extra)
        trainer = Trainer(TrainConfig(**cfg), comm=order_check.checked(_world(), order_check.mode_from_env()))
        trainer.run()
        return trainer.model.state_dict()

    c = _world()
    d = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    lines(AlphaBeta(1e-5, 1e12))                      # hierarchical wins for every bucket
    straight = train(epochs=2)
    train(epochs=1, checkpoint_dir=d)
    lines(AlphaBeta(1.0, 1e3))                        # now flat would win everywhere
    resumed = train(epochs=2, checkpoint_dir=d, resume=True)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)
