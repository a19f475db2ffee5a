"""The collective-order checker (--check-collectives) and the rank-agreed metrics pipeline,
under mpiexec -n 2 and -n 4."""
import numpy as np
import pytest

from dptrain import comm as comms
from dptrain.comm.order_check import CheckedCommunicator, CollectiveOrderError, labelled


def checked(mode):
    return CheckedCommunicator(comms.create("mpi"), mode)


@pytest.mark.mpi(min_size=2)
def test_strict_mode_names_a_reordered_collective_before_it_is_posted():
    c = checked("strict")
    buf = np.ones(4)
    with labelled("warm-up"):
        c.allreduce(buf)                          # position 0 agrees
    with pytest.raises(CollectiveOrderError) as failure:
        if c.rank == 0:
            with labelled("allreduce of the step metrics of step 3"):
                c.iallreduce(np.zeros(3)).wait()
        else:
            with labelled("allreduce of bucket 0 (800 bytes) at step 4"):
                c.allreduce(np.zeros(200, dtype=np.float32))
    message = str(failure.value)
    assert "position 1 of channel 0" in message
    assert "rank 0 posted iallreduce of 24 B float64 (allreduce of the step metrics of step 3)" in message
    others = ",".join(str(r) for r in range(1, c.size))
    assert (f"rank{'s' if c.size > 2 else ''} {others} posted allreduce of 800 B float32 "
            "(allreduce of bucket 0 (800 bytes) at step 4)") in message
    every = c.allreduce_obj([message])           # every rank failed alike
    assert len(set(every)) == 1


@pytest.mark.mpi(min_size=2)
def test_fingerprints_catch_a_swap_that_mpi_cannot_see():
    """Two reductions of the same size posted in opposite orders: MPI pairs them without
    complaint (and mixes the sums); the periodic fingerprint check names the first one."""
    c = checked(1)
    a, b = np.full(2, 1.0), np.full(2, 2.0)
    order = [("bucket 0", a), ("bucket 1", b)]
    if c.rank % 2:
        order.reverse()
    handles = []
    for what, buf in order:
        with labelled(what):
            handles.append(c.iallreduce(buf))
    for h in handles:
        h.wait()
    with pytest.raises(CollectiveOrderError, match=r"position 0 of channel 0 \(--check-collectives\): rank"
                       r".* posted iallreduce of 16 B float64 \(bucket [01]\)"):
        c.verify()


@pytest.mark.mpi(min_size=2)
def test_fingerprints_agree_when_a_thread_is_behind_on_one_rank():
    """Only the prefix every rank has posted is compared; the rest is checked next time."""
    c = checked(1)
    d = c.dup()                                   # a second channel (a communication thread's)
    for i in range(3):
        with labelled(f"bucket {i}"):
            c.allreduce(np.ones(3))
    if c.rank == 0:
        with labelled("bucket 9"):
            h = d.iallreduce(np.ones(1))          # rank 0 is one collective ahead on channel 1
    c.verify()
    if c.rank != 0:
        with labelled("bucket 9"):
            h = d.iallreduce(np.ones(1))
    h.wait()
    c.verify()
    assert d.log.base == 1 and c.log.base == 4     # dup + 3 reductions agreed on channel 0


@pytest.mark.mpi(min_size=2)
def test_a_rank_posting_metrics_on_its_own_timing_fails_the_run_naming_both(monkeypatch):
    """The bug of issue 11, put back on one rank: its metrics reduction goes out a step
    early (as when a device copy happened to be ready). The checker stops the run at once,
    on every rank, naming the metrics reduction and the gradient bucket it met."""
    from dptrain import backend
    from dptrain.train import TrainConfig, Trainer, step_metrics
    c = comms.create("mpi")
    if c.rank == 1:
        original = step_metrics.StepMetrics.__init__

        def early(self, *args, **kw):
            original(self, *args, **kw)
            self._copy_depth = 0
        monkeypatch.setattr(step_metrics.StepMetrics, "__init__", early)
    monkeypatch.setattr(backend, "host_reads_are_free", lambda: False)   # device pipeline
    cfg = TrainConfig(model="mlp", dataset="synthetic:1x8x8:300", max_steps=6, batch_size=32,
                      quiet=True, threads=1, sync="blocking", check_collectives="strict")
    with pytest.raises(CollectiveOrderError) as failure:
        Trainer(cfg, comm=c).run()
    message = str(failure.value)
    assert "step metrics of step 0" in message and "allreduce of bucket 0" in message, message
    assert len(set(c.allreduce_obj([message]))) == 1


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("progress", ["thread", "poll"])
def test_periodic_checks_during_training_pass_and_cover_every_channel(progress, timing):
    """--check-collectives 1: fingerprints compared after every step, with the communication
    thread's channel too; a correct run passes and every channel is checked up to its end."""
    from dptrain.train import TrainConfig, Trainer
    cfg = TrainConfig(model="thesis-cnn", dataset="synthetic:1x28x28:120", max_steps=4,
                      batch_size=24, quiet=True, threads=1, sync="overlap", comm_progress=progress,
                      bucket_mb=0.05, sync_bn=True, check_collectives="1")
    t = Trainer(cfg, comm=comms.create("mpi"))
    t.run()
    channels = t.comm._registry
    assert len(channels) == (2 if progress == "thread" else 1)
    assert all(ch.log.base > 0 and ch.log.entries == [] for ch in channels)
