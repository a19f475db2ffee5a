"""Weak-scaling efficiency from wall time, differenced against a short run, with its spread
over rounds (bench/weak_scaling.py and the --ranks report's rows)."""
from types import SimpleNamespace

import pytest

from dptrain.bench.scaling import _rows
from dptrain.bench.weak_scaling import differenced_step_s, paired_efficiencies, spread


def test_start_up_and_warm_up_cancel():
    # a run whose first 5 steps take 3 s (start-up, warm-up) and then 0.03 s per step
    t = lambda steps: 3.0 + 0.03 * (steps - 5)                           # noqa: E731
    assert differenced_step_s(t(5), t(305), 5, 305) == pytest.approx(0.03)
    with pytest.raises(ValueError):
        differenced_step_s(1.0, 2.0, 10, 10)


def test_efficiency_is_paired_within_rounds_and_spread_over_them():
    base = [0.030, 0.040, 0.030]             # round 2 was slow for every row alike
    two = [0.032, 0.042, None]               # round 3 not finished (a cut bench)
    effs = paired_efficiencies(base, two)
    assert effs == pytest.approx([0.030 / 0.032, 0.040 / 0.042])
    s = spread(effs)
    assert s["min"] == pytest.approx(0.9375) and s["max"] == pytest.approx(0.952381, rel=1e-5)
    assert s["median"] == pytest.approx((0.9375 + 0.952381) / 2, rel=1e-5) and s["rounds"] == 2
    assert spread([]) is None


def _run(step, wall):
    return {"step_s": step, "wall_step_s": wall, "comm_s": 0.0, "exposed_s": 0.0, "steps": 10,
            "hidden_fraction": 0.0, "bytes_per_step": 0}


def test_the_ranks_rows_carry_the_wall_efficiency_and_its_spread():
    one = (1, "blocking", "thread", None, "auto")
    ind = (2, "independent", "auto", None, "auto")
    blk = (2, "blocking", "auto", None, "auto")
    results = {one: [_run(0.030, 0.031), _run(0.030, 0.040)],
               ind: [_run(0.031, 0.032), _run(0.031, 0.041)],
               blk: [_run(0.033, 0.036)]}                  # its second round was cut
    predictor = SimpleNamespace(step_ms=lambda *a: None)
    rows = _rows(SimpleNamespace(batch_size=64), [one, ind, blk], results, predictor, True)
    single, independent, blocking = rows
    assert single["wall_efficiency"] == 1.0
    assert independent["wall_efficiency_spread"]["min"] == pytest.approx(0.031 / 0.032)
    assert independent["wall_efficiency_spread"]["max"] == pytest.approx(0.040 / 0.041)
    assert blocking["wall_efficiency"] == pytest.approx(0.031 / 0.036)
    assert blocking["wall_efficiency_spread"]["rounds"] == 1
    assert blocking["efficiency"] == pytest.approx(0.030 / 0.033)
    assert "noise" not in blocking
