"""--sync auto and --bucket-mb auto under mpiexec (-n 2 and -n 4): every rank adopts the same
plan whatever its own timings, and the plan never changes the result."""
import os
import shutil

import numpy as np
import pytest

from dptrain import comm as comms
from dptrain.comm import link_probe
from dptrain.comm.emulated import AlphaBeta
from dptrain.comm.local import LocalCommunicator
from dptrain.parallel import autotune, plan_margin, planner
from dptrain.train import TrainConfig, Trainer
from test_data_parallel import world     # COMM_WORLD, order-checked as the suite asks

SLOW = AlphaBeta(1e-3, 1e6)          # 1 Mbit/s: overlapping (and replicating FC) pays


def trainer(comm, **overrides):
    cfg = dict(model="mlp", dataset="synthetic:1x8x8:300", dtype="float64", max_steps=12,
               batch_size=32, optimizer="momentum", lr=0.05, quiet=True, threads=1)
    cfg.update(overrides)
    t = Trainer(TrainConfig(**cfg), comm=comm)
    t.run()
    return t


def resume_from(comm, full: str, root: str, step: int, **overrides):
    """A run resumed from ``full``'s checkpoint of ``step``, copied alone into a fresh
    directory under ``root`` (so the resume cannot pick a later one)."""
    d = f"{root}/from{step}"
    if comm.rank == 0:
        os.makedirs(d)
        shutil.copy(f"{full}/ckpt-{step:09d}.npz", d)
    comm.barrier()
    return trainer(comm, checkpoint_dir=d, resume=True, **overrides)


def plans_everywhere(comm, plan):
    return comm.allreduce_obj([plan.as_dict() if plan else None])


def alternating_medians(monkeypatch):
    """Layer timings that flip the best cut at every plan: a slow backward pass (one bucket
    per layer), then an instant one (one bucket), and so on; as rank 0 sees them."""
    original = autotune.LayerClock.medians
    calls = []

    def medians(self):
        m = original(self)
        m[1] = np.where(m[1] > 0, 10.0 if len(calls) % 2 == 0 else 0.0, 0.0)
        calls.append(m)
        return m
    monkeypatch.setattr(autotune.LayerClock, "medians", medians)
    # the faked times have no spread: the margin stays the planner's (parallel/plan_margin.py)
    monkeypatch.setattr(plan_margin, "step_spread", lambda samples: 0.0)


@pytest.mark.mpi(min_size=2)
def test_link_measurement_is_agreed_from_rank_dependent_timings():
    c = world()
    link = AlphaBeta(30e-6, 1e9)
    sizes = link_probe.SIZES
    # rank r saw everything (1 + r) times slower (it waited for the others); the fit takes
    # the fastest rank's times per size, so every rank gets rank 0's exact line
    timer = lambda comm: [link.allreduce(comm.size, n) * (1 + comm.rank) for n in sizes]
    got = link_probe.measure_link(c, timer=timer)
    everyone = c.allreduce_obj([(got.alpha, got.beta)])
    assert len(set(everyone)) == 1
    assert got.alpha == pytest.approx(link.alpha, rel=1e-6)
    assert got.beta == pytest.approx(link.beta, rel=1e-6)


@pytest.mark.mpi(min_size=2)
def test_emulated_link_is_what_is_measured():
    """The probe's timings of an emulated link are never below what the emulator's model
    charges (it holds every reduction at least its model time, counted from this rank's own
    post), whatever the load: a link that bypassed the emulation (shared memory) would time in
    microseconds. Only lower bounds are asserted: on a loaded machine a rank is descheduled,
    which adds time (it inflated the 1 KiB times and so the fitted slope read 42 Mbit/s for
    20 Mbit/s: the fit is tested on exact and on spiked times in tests/parallel/test_planner.py
    and tests/test_comm_choice.py)."""
    c = comms.create("emulated", inner=world(), spec="bw=20Mbit")
    sizes = (1 << 10, 8 << 10, 32 << 10)
    fastest = link_probe.time_allreduces(c, sizes=sizes, repeats=2)
    for nbytes, seconds in zip(sizes, fastest):
        assert seconds >= c.model.allreduce(c.size, nbytes), (nbytes, seconds)


@pytest.mark.mpi(min_size=2)
def test_plan_agrees_across_ranks_under_rank_dependent_timings(monkeypatch):
    """Even ranks see a slow backward pass (one bucket per layer finishes the link earliest),
    odd ranks an instant one (one bucket pays alpha once): planned alone they would disagree
    and post different reductions; rank 0's plan, broadcast, is what every rank adopts."""
    c = world()
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    original = autotune.LayerClock.medians
    tables = []

    def medians(self):
        m = original(self)
        m[1] = np.where(m[1] > 0, 10.0 if c.rank % 2 == 0 else 0.0, 0.0)
        tables.append(m)
        return m
    monkeypatch.setattr(autotune.LayerClock, "medians", medians)
    auto = trainer(c, sync="overlap", bucket_mb="auto")
    dp = auto.dp
    plans = plans_everywhere(c, dp.auto.plan)
    assert all(p == plans[0] for p in plans)
    assert dp.auto.plan.groups == [[5], [3], [1]]            # rank 0's: one per dense layer
    assert [b.layers for b in dp.buckets] == [[5], [3], [1]]
    alone = planner.choose(autotune.layer_table(dp, tables[0]), c.size, SLOW, ("overlap",))
    proposals = c.allreduce_obj([alone.groups])
    assert proposals[0] == [[5], [3], [1]] and proposals[1] == [[5, 3, 1]]
    # buckets never change the result: bitwise equal to a fixed-bucket run
    fixed = trainer(c, sync="overlap", bucket_mb=4.0)
    for k, v in fixed.model.state_dict().items():
        np.testing.assert_array_equal(auto.model.state_dict()[k], v, err_msg=k)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("model,dataset,extra", [
    ("mlp", "synthetic:1x8x8:300", {"fc_replicate": "none"}),
    ("thesis-cnn", "synthetic:1x28x28:150", {"sync_bn": True, "batch_size": 24}),
    ("mlp", "synthetic:1x8x8:300", {"accumulate": 2})])
def test_results_under_auto_equal_one_process(monkeypatch, model, dataset, extra):
    """P ranks with auto (whatever it chooses, re-planned often) against one process, float64."""
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    monkeypatch.setattr(autotune, "REPLAN_EVERY", 3)
    monkeypatch.setattr(autotune, "REPLAN_WINDOW", 1)
    monkeypatch.setattr(autotune, "DRIFT", -1.0)             # adopt any different cut
    alternating_medians(monkeypatch)                         # so the cut does change
    kw = dict(model=model, dataset=dataset, max_steps=16, epochs=4, **extra)
    c = world()
    auto = trainer(c, **kw)
    assert auto.dp.auto.plan is not None and auto.dp.auto.replans >= 1
    reference = trainer(LocalCommunicator(), **kw)
    assert reference.dp.auto is None and reference.dp.schedule == "blocking"
    for k, v in reference.model.state_dict().items():
        np.testing.assert_allclose(auto.model.state_dict()[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
    plans = plans_everywhere(c, auto.dp.auto.plan)
    assert all(p == plans[0] for p in plans)


@pytest.mark.mpi(min_size=2)
def test_replanned_buckets_leave_parameters_bitwise_unchanged(monkeypatch):
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    monkeypatch.setattr(autotune, "REPLAN_EVERY", 2)
    monkeypatch.setattr(autotune, "REPLAN_WINDOW", 1)
    monkeypatch.setattr(autotune, "DRIFT", -1.0)
    alternating_medians(monkeypatch)
    c = world()
    auto = trainer(c, sync="overlap", bucket_mb="auto", max_steps=20, epochs=3)
    assert auto.dp.auto.replans >= 2
    fixed = trainer(c, sync="overlap", bucket_mb=4.0, max_steps=20, epochs=3)
    for k, v in fixed.model.state_dict().items():
        np.testing.assert_array_equal(auto.model.state_dict()[k], v, err_msg=k)


@pytest.mark.mpi(min_size=2)
def test_resume_with_auto_adopts_the_saved_plan_bitwise(monkeypatch, tmp_path_factory):
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    c = world()
    d = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    # 96 samples, batch 24: 4 steps per epoch; the plan is made before step 5 (index 5)
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", sync_bn=True, batch_size=24,
              optimizer="adam", lr=1e-3, max_steps=None)
    straight = trainer(c, epochs=4, **kw)
    stopped = trainer(c, epochs=2, checkpoint_dir=d, **kw)
    saved = stopped.dp.auto.plan
    assert saved is not None and saved.schedule == straight.dp.auto.plan.schedule == "overlap-fc"
    resumed = Trainer(TrainConfig(epochs=4, checkpoint_dir=d, resume=True, dtype="float64",
                                  quiet=True, threads=1, **kw), comm=c)
    assert resumed.dp.auto.plan == saved                    # adopted before any step
    assert resumed.dp.schedule == saved.schedule
    resumed.run()
    for k, v in straight.model.state_dict().items():
        np.testing.assert_array_equal(resumed.model.state_dict()[k], v, err_msg=k)
    # with another --sync the saved plan does not apply: warm up and plan again
    other = Trainer(TrainConfig(epochs=6, checkpoint_dir=d, resume=True, dtype="float64", quiet=True,
                                threads=1, sync="overlap", **kw), comm=c)
    assert other.dp.schedule == "overlap" and other.dp.auto.plan is None
    other.run()
    assert other.dp.auto.plan.schedule == "overlap"


@pytest.mark.mpi(min_size=1)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_resume_from_any_step_under_auto_is_bitwise(monkeypatch, tmp_path_factory, dtype):
    """Checkpoints of every step, before and after the plan: resuming from each gives the
    uninterrupted run's parameters bit for bit. On a slow link the plan picks overlap-fc,
    which rounds differently from the overlap of the warm-up: a warm-up of real training
    steps made a resumed run's result depend on where its own warm-up fell."""
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    c = world()
    root = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    kw = dict(max_steps=9, dtype=dtype, optimizer="adam", lr=1e-3)
    full = f"{root}/full"
    straight = trainer(c, checkpoint_dir=full, checkpoint_every="1", keep_checkpoints=20, **kw)
    if c.size > 1:
        assert straight.dp.auto.plan.schedule == "overlap-fc"
    expected = straight.model.state_dict()
    for step in (1, 2, 4, 5, 6):
        resumed = resume_from(c, full, root, step, **kw)
        assert resumed.resumed_from.name == f"ckpt-{step:09d}.npz"
        for k, v in expected.items():
            np.testing.assert_array_equal(resumed.model.state_dict()[k], v,
                                          err_msg=f"resumed from step {step}: {k}")


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync,bucket_mb", [("auto", "auto"), ("auto", 1.0), ("blocking", "auto"),
                                            ("overlap", "auto"), ("overlap-fc", "auto"),
                                            ("overlap-fc", 1.0)])
def test_every_layer_replicated_leaves_no_bucket_and_every_schedule_trains(monkeypatch, sync,
                                                                           bucket_mb):
    """--fc-replicate all on an MLP (every parametrised layer a Dense): overlap-fc reduces no
    bucket at all, which is a valid plan (it was "invalid communication plan" at step 5), and
    every schedule gives one process's parameters."""
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    monkeypatch.setattr(autotune, "REPLAN_EVERY", 3)         # re-planning an empty cut too
    monkeypatch.setattr(autotune, "REPLAN_WINDOW", 1)
    kw = dict(sync=sync, bucket_mb=bucket_mb, fc_replicate="all", max_steps=12, epochs=4)
    auto = trainer(world(), **kw)
    if sync == "auto" or sync == "overlap-fc":
        assert auto.dp.schedule == "overlap-fc" and auto.dp.buckets == []
    reference = trainer(LocalCommunicator(), **kw)
    for k, v in reference.model.state_dict().items():
        np.testing.assert_allclose(auto.model.state_dict()[k], v, rtol=1e-9, atol=1e-12, err_msg=k)
