"""The automatic plan against blocking, after the fact (parallel/plan_check.py), under mpiexec:
a plan that loses by more than 5 % falls back to blocking on every rank at the same step, one
that wins stays, the fallback never changes a bit, and a resumed run continues with the plan
in force."""
import numpy as np
import pytest

from dptrain.comm import link_probe
from dptrain.parallel import plan_check, plan_margin
from test_autotune import SLOW, resume_from, trainer
from test_data_parallel import world

STEPS = 2 * plan_check.WINDOW + plan_check.CHECK_AFTER + 4     # the check decides at step 18


def overlap_planned(monkeypatch, slow: str):
    monkeypatch.setattr(link_probe, "measure_link", lambda comm, xp=None: SLOW)
    # the planner takes overlap whatever it predicts: the check is what is under test
    monkeypatch.setattr(plan_margin, "margin", lambda *measured: -1.0)
    monkeypatch.setenv(plan_check.SLOW_ENV, f"{slow}:0.03")


# poll: with the fake 1 Mbit/s link the planner would otherwise take the priority engine with
# 16 KiB chunks, whose per-chunk cost on 2 oversubscribed cores (about 2 ms) makes the plan
# lose to blocking whatever the injected delay (the check then rightly falls back)
KW = dict(fc_replicate="none", max_steps=STEPS, epochs=10, comm_progress="poll")


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("slow,fell_back", [("overlap", True), ("blocking", False)])
def test_a_plan_that_loses_falls_back_on_every_rank(monkeypatch, slow, fell_back):
    overlap_planned(monkeypatch, slow)
    c = world()
    run = trainer(c, **KW)
    auto = run.dp.auto
    outcomes = c.allreduce_obj([auto.check.outcome])
    assert all(o == outcomes[0] for o in outcomes)              # decided alike on every rank
    assert auto.check.outcome["fell_back"] is fell_back and auto.check.outcome["schedule"] == "overlap"
    expected = "blocking" if fell_back else "overlap"
    assert auto.plan.schedule == run.dp.schedule == expected
    assert auto.summary()["check"] == auto.check.outcome       # in the metrics
    assert plan_check.describe(auto.check.outcome).endswith(
        "falls back to --sync blocking (same buckets)" if fell_back else "keeps --sync overlap")
    # the check never changes a bit: the same run with the check never reaching its windows
    monkeypatch.setattr(plan_check, "CHECK_AFTER", 10 ** 6)
    unchecked = trainer(c, **KW)
    assert unchecked.dp.auto.check.outcome is None and unchecked.dp.schedule == "overlap"
    for k, v in unchecked.model.state_dict().items():
        np.testing.assert_array_equal(run.model.state_dict()[k], v, err_msg=k)


@pytest.mark.mpi(min_size=2)
def test_a_resumed_run_continues_with_the_plan_in_force(monkeypatch, tmp_path_factory):
    overlap_planned(monkeypatch, "overlap")
    c = world()
    root = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    full = f"{root}/full"
    straight = trainer(c, checkpoint_dir=full, checkpoint_every="1", keep_checkpoints=40, **KW)
    assert straight.dp.auto.plan.schedule == "blocking"
    for step, in_force in ((12, "overlap"), (STEPS - 2, "blocking")):   # mid-check, after it
        resumed = resume_from(c, full, root, step, **KW)
        assert resumed.dp.auto.plan.schedule == resumed.dp.schedule == in_force, step
        for k, v in straight.model.state_dict().items():
            np.testing.assert_array_equal(resumed.model.state_dict()[k], v, err_msg=f"{step}: {k}")


@pytest.mark.mpi(min_size=2)
def test_an_explicit_sync_or_bucket_cap_is_not_checked(monkeypatch):
    overlap_planned(monkeypatch, "overlap")
    c = world()
    for extra in (dict(sync="overlap"), dict(bucket_mb=1.0)):
        run = trainer(c, **KW, **extra)
        assert run.dp.auto.check is None and run.dp.schedule == "overlap", extra
