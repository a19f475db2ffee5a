"""Which buckets go hierarchical (comm/reduction_choice.py) and the layouts that allow it
(comm/topology.py), from synthetic measured lines."""
from dptrain.comm.emulated import AlphaBeta
from dptrain.comm.reduction_choice import PlannedLink, ReductionChoice
from dptrain.comm.topology import Layout


def _choice(flat, hier, p=4):
    c = ReductionChoice("auto", p)
    c.flat, c.hier = flat, hier
    return c


def test_large_buckets_go_hierarchical_when_its_line_is_steeper_only_at_the_start():
    # hierarchical: 3x the latency, 2/3 of the time per byte (what 2 nodes x 2 ranks save)
    flat, hier = AlphaBeta(20e-6, 100e6), AlphaBeta(60e-6, 150e6)
    c = _choice(flat, hier)
    assert not c.hierarchical(1 << 10)
    assert c.hierarchical(1 << 20)
    edge = (hier.allreduce(4, 0) - flat.allreduce(4, 0)) / \
        ((flat.allreduce(4, 1) - flat.allreduce(4, 0)) - (hier.allreduce(4, 1) - hier.allreduce(4, 0)))
    assert not c.hierarchical(int(edge) - 64) and c.hierarchical(int(edge) + 64)
    assert c.describe().startswith("hierarchical for buckets from ")


def test_flat_when_measured_faster_everywhere_and_before_any_measurement():
    assert _choice(AlphaBeta(20e-6, 200e6), AlphaBeta(40e-6, 100e6)).describe() \
        == "flat (measured faster at every size)"
    assert not ReductionChoice("auto", 4).hierarchical(1 << 30)
    assert ReductionChoice("hierarchical", 4).hierarchical(8)
    assert not ReductionChoice("flat", 4).hierarchical(1 << 30)


def test_the_planner_prices_each_bucket_at_the_reduction_it_gets():
    flat, hier = AlphaBeta(20e-6, 100e6), AlphaBeta(60e-6, 150e6)
    link = PlannedLink(flat, _choice(flat, hier))
    assert link.allreduce(4, 1 << 10) == flat.allreduce(4, 1 << 10)
    assert link.allreduce(4, 1 << 24) == hier.allreduce(4, 1 << 24) < flat.allreduce(4, 1 << 24)
    assert link.allgather(4, 1 << 20) == flat.allgather(4, 1 << 20)


def test_layouts():
    two = Layout(2, (2, 2), (0, 0, 1, 1))
    assert two.two_level and two.describe() == "2 nodes x 2 ranks"
    assert Layout(1, (4,), (0,) * 4).why_flat() == "one node"
    assert Layout(2, (1, 1), (0, 1)).why_flat() == "one rank per node"
    uneven = Layout(2, (3, 1), (0, 0, 0, 1))
    assert not uneven.two_level and "unequal" in uneven.why_flat()


def test_a_plan_keeps_the_reduction_lines_for_a_resumed_run():
    import pytest
    from dptrain.parallel.planner import Plan
    plan = Plan("overlap", [[2], [0]], {}, [2e-5, 1e8, 6e-5, 1.5e8])
    again = Plan.from_dict(plan.as_dict())
    assert again.reduction == plan.reduction
    assert Plan.from_dict(Plan("overlap", [[0]]).as_dict()).reduction is None
    for bad in ([1.0, 2.0], [0.0, 0.0, 1.0, 1.0], [float("nan")] * 4):
        with pytest.raises(ValueError):
            Plan.from_dict({**plan.as_dict(), "reduction": bad})
