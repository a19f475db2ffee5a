"""The bucket planner and the link fit against cases worked out by hand and exhaustive search."""
import itertools

import numpy as np
import pytest

from dptrain.comm.emulated import AlphaBeta
from dptrain.comm.link_probe import fit_alpha_beta
from dptrain.parallel import planner
from dptrain.parallel.predict import LayerTimes, simulate

MS = 1e-3


def net(two_alpha_ms: float) -> AlphaBeta:
    """P = 2: allreduce(n) = 2 alpha + n beta; beta = 1 ms per byte (bytes below are ms)."""
    return AlphaBeta(latency_s=two_alpha_ms / 2 * MS, bandwidth_bps=8 / MS)


def layers(bwd_ms, cost_ms, fwd_ms=None):
    n = len(bwd_ms)
    fwd = fwd_ms or [5.0] * n
    return LayerTimes([f * MS for f in fwd], [b * MS for b in bwd_ms], [0.0] * n,
                      param_bytes=list(cost_ms), batch=8)


def exposed(times, groups, link, schedule="overlap", **kw):
    return simulate(times, 2, link, schedule, groups=groups, **kw)["exposed_s"]


def every_cut(order):
    """All splits of ``order`` into contiguous non-empty runs."""
    for mask in itertools.product([False, True], repeat=len(order) - 1):
        groups, current = [], [order[0]]
        for cut, i in zip(mask, order[1:]):
            if cut:
                groups.append(current)
                current = []
            current.append(i)
        yield groups + [current]


def test_two_layers_two_buckets_by_hand():
    # backward: layer 1 ends at 10 ms, layer 0 at 20 ms; 2 alpha = 2 ms; beta n: 8 ms and 4 ms.
    # one bucket [1, 0]: posted at 20, free at 20 + 2 + 12 = 34; the next forward needs layer 0
    # at 20: 14 ms exposed. Two buckets: [1] 10 -> 20, [0] 20 -> 26: 6 ms exposed.
    t, link = layers([10, 10], [4, 8]), net(2)
    assert exposed(t, [[1, 0]], link) == pytest.approx(14 * MS)
    assert exposed(t, [[1], [0]], link) == pytest.approx(6 * MS)
    assert planner.optimal_groups(t, 2, link) == [[1], [0]]


def test_two_layers_one_bucket_when_latency_dominates():
    # layer 1 ends at 10, layer 0 at 15; 2 alpha = 10 ms; beta n: 2 and 1 ms.
    # one bucket: 15 + 10 + 3 = 28; two: [1] 10 -> 21, [0] 21 -> 33. One bucket wins.
    t, link = layers([5, 10], [2, 1]), net(10)
    assert exposed(t, [[1, 0]], link) == pytest.approx(13 * MS)
    assert exposed(t, [[1], [0]], link) == pytest.approx(18 * MS)
    assert planner.optimal_groups(t, 2, link) == [[1, 0]]


def test_three_layers_large_last_layer_first():
    # backward ends: layer 2 at 10, 1 at 20, 0 at 30; 2 alpha = 4; beta n: 1, 1, 15 ms.
    #   [2,1,0]      30 + 4 + 17                      = 51
    #   [2],[1,0]    10 + 4 + 15 = 29; 30 + 4 + 2     = 36   <- best
    #   [2,1],[0]    20 + 4 + 16 = 40; 40 + 4 + 1     = 45
    #   [2],[1],[0]  29; 29 + 4 + 1 = 34; 34 + 4 + 1  = 39
    t, link = layers([10, 10, 10], [1, 1, 15]), net(4)
    by_hand = {((2, 1, 0),): 51, ((2,), (1, 0)): 36, ((2, 1), (0,)): 45, ((2,), (1,), (0,)): 39}
    for groups, free_at in by_hand.items():
        assert exposed(t, [list(g) for g in groups], link) == pytest.approx((free_at - 30) * MS)
    assert planner.optimal_groups(t, 2, link) == [[2], [1, 0]]


@pytest.mark.parametrize("seed", range(12))
def test_dynamic_programme_equals_exhaustive_search(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    params = rng.random(n) < 0.7
    params[int(rng.integers(n))] = True
    t = LayerTimes(list(rng.random(n) * 5 * MS), list(rng.random(n) * 10 * MS),
                   list(rng.random(n) * 0.5 * MS),
                   [int(b) if p else 0 for b, p in zip(rng.integers(1, 20, n), params)], batch=8)
    link = net(float(rng.random() * 6))
    order = planner.bucket_layers(t)
    best = min(exposed(t, g, link) for g in every_cut(order))
    dp = planner.optimal_groups(t, 2, link)
    assert planner.is_valid_cut(dp, order)
    assert exposed(t, dp, link) == pytest.approx(best, abs=1e-12)


def test_fc_gathers_in_the_channel_plan_stays_within_the_exhaustive_best():
    # two dense layers replicated: their gathers share the link with the buckets
    t = LayerTimes([2 * MS] * 5, [4 * MS] * 5, [0.1 * MS] * 5, [800, 0, 4000, 0, 400],
                   fc_shape={2: (100, 10)}, batch=8)
    link = AlphaBeta(0.2 * MS, 8 / (2e-3 * MS))
    kw = dict(fc_layers=[2], global_batch=16)
    order = planner.bucket_layers(t, exclude={2})
    best = min(simulate(t, 2, link, "overlap-fc", groups=g, **kw)["step_s"] for g in every_cut(order))
    plan = planner.choose(t, 2, link, ("overlap-fc",), [2], 16)
    assert plan.predicted["overlap-fc"]["step_s"] == pytest.approx(best, rel=1e-9)


def test_schedule_choice_prefers_the_simplest_unless_clearly_faster():
    t = layers([10, 10], [4, 8])
    fast = AlphaBeta(0.0, 8 / 1e-12)                     # communication costs nothing
    assert planner.choose(t, 2, fast).schedule == "blocking"
    plan = planner.choose(t, 2, net(2))
    assert plan.schedule == "overlap" and plan.groups == [[1], [0]]
    assert plan.predicted["overlap"]["step_s"] < plan.predicted["blocking"]["step_s"]
    # a schedule is taken only when predicted faster by more than the margin
    gain = 1 - plan.predicted["overlap"]["step_s"] / plan.predicted["blocking"]["step_s"]
    assert planner.choose(t, 2, net(2), margin=gain + 0.01).schedule == "blocking"


def test_wide_fc_layer_is_replicated_when_the_link_is_slow():
    # a 4096 x 4096 layer at global batch 64: gathering 64 x 8192 values beats reducing 16 M
    t = LayerTimes([1 * MS, 20 * MS], [1 * MS, 40 * MS], [0.0, 5 * MS], [4000, 4096 * 4096 * 4],
                   fc_shape={1: (4096, 4096)}, batch=32)
    plan = planner.choose(t, 2, AlphaBeta(20e-6, 1e9), fc_layers=[1], global_batch=64)
    assert plan.schedule == "overlap-fc" and plan.groups == [[0]]


def test_fixed_cap_keeps_the_cap_buckets():
    t = layers([10, 10, 10], [1, 1, 15])
    plan = planner.choose(t, 2, net(4), bucket_bytes=2)
    assert plan.groups == [[2], [1, 0]]                 # 15 >= 2: cut; 1 + 1 >= 2: cut at the end


def test_plan_round_trips_through_a_dict_and_validation():
    plan = planner.Plan("overlap", [[3], [1, 0]], {"overlap": {"step_s": 1.0, "exposed_s": 0.1}})
    assert planner.Plan.from_dict(plan.as_dict()) == plan
    assert planner.is_valid_cut([[3], [1, 0]], [3, 1, 0])
    assert not planner.is_valid_cut([[3], [0, 1]], [3, 1, 0])       # not in reverse order
    assert not planner.is_valid_cut([[3], [1]], [3, 1, 0])          # a layer left out
    assert not planner.is_valid_cut([[3], [], [1, 0]], [3, 1, 0])


@pytest.mark.parametrize("p", [2, 4])
def test_link_fit_recovers_alpha_and_beta(p):
    link = AlphaBeta(25e-6, 2e9)
    sizes = [1 << 10, 16 << 10, 128 << 10, 512 << 10]
    fitted = fit_alpha_beta(sizes, [link.allreduce(p, n) for n in sizes], p)
    assert fitted.alpha == pytest.approx(link.alpha, rel=1e-6)
    assert fitted.beta == pytest.approx(link.beta, rel=1e-6)


def test_link_fit_never_negative():
    sizes = [1000, 2000, 3000]
    fitted = fit_alpha_beta(sizes, [0.0, 1e-3, 2.2e-3], 2)       # the line crosses below zero
    assert fitted.alpha == 0.0 and fitted.beta > 0
    flat = fit_alpha_beta(sizes, [1e-4, 1e-4, 1e-4], 2)           # no slope seen at all
    assert flat.alpha == pytest.approx(5e-5) and flat.beta > 0
