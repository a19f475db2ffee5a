"""The priority engine in the simulator and the planner: chunks of the first layer's bucket
overtake a large bucket posted before it (timelines worked out by hand), the planner takes
the engine when it is predicted faster, and the plan carries it through a checkpoint."""
import pytest

from dptrain.comm.emulated import AlphaBeta
from dptrain.parallel import planner
from dptrain.parallel.predict import LayerTimes, simulate

# P = 2, no latency: an allreduce of n bytes takes n ms; every chunk also carries the 8
# float32 agreement slots (32 bytes, 0.032 ms)
NET = AlphaBeta(latency_s=0.0, bandwidth_bps=8e3)
SLOT = 0.032


def big_last_layer():
    """Layer 1's 8000-byte bucket is posted at 3 s, layer 0's 1000 bytes at 4 s."""
    return LayerTimes(fwd=[1.0, 1.0], bwd=[1.0, 1.0], upd=[0.0, 0.0],
                      param_bytes=[1000, 8000], batch=4)


def step(chunk=None):
    return simulate(big_last_layer(), 2, NET, "overlap", groups=[[1], [0]],
                    chunk_bytes=chunk)["step_s"]


def test_fifo_timeline_by_hand():
    # [1] on the wire 3-11, [0] 11-12. Step 2 starts at 4: layer 0 waits until 12, runs to 13,
    # layer 1 to 14, backward to 16: 12 s
    assert step() == pytest.approx(12.0)


def test_the_first_layers_bucket_overtakes_by_hand():
    # Chunks of 1000 bytes (c = 1.032 s); chunk n is chosen when chunk n - 2 ends, from the
    # counts chunk n - 2 carried (read when it was posted); with nothing agreed, the oldest
    # bucket goes. [1] posted at 3: its chunks 0 and 1 go at once (FIFO), ending at 4.032 and
    # 5.064; chunks 2 and 3 (chosen at 4.032 and 5.064 from counts of 3: [0], posted at 4,
    # not yet) end at 6.096 and 7.128; chunk 4, chosen at 6.096 from chunk 2's counts of
    # 4.032, is [0]'s: 7.128-8.16; [1]'s last four end at 12.288. Step 2 from 4: layer 0
    # waits until 8.16, runs to 9.16; layer 1 waits until 12.288, runs to 13.288; backward
    # to 15.288: 11.288 s. Reversed priority (the last layer first) would leave [0] until
    # 12.288: 12.288 s.
    c = 1 + SLOT
    assert step(1000) == pytest.approx((3 + 9 * c) + 1 + 2 - 4)
    assert step(1000) < step()


def test_the_planner_takes_priority_when_predicted_faster():
    t = big_last_layer()
    plan = planner.choose(t, 2, NET, ("overlap",), progress=("poll", "priority"), chunks=[1000])
    assert (plan.progress, plan.chunk_bytes, plan.groups) == ("priority", 1000, [[1], [0]])
    assert plan.predicted["overlap"]["step_s"] == pytest.approx(step(1000))
    fifo = planner.choose(t, 2, NET, ("overlap",), progress=("poll",))
    assert (fifo.progress, fifo.chunk_bytes) == ("poll", None)
    # the simpler engine unless the chunked one gains more than the margin
    gain = 1 - step(1000) / fifo.predicted["overlap"]["step_s"]
    plan = planner.choose(t, 2, NET, ("overlap",), progress=("poll", "priority"), chunks=[1000],
                          margin=gain + 0.01)
    assert plan.progress == "poll"


def test_overlap_fc_keeps_a_fifo_engine_when_there_is_a_choice():
    # a wide FC layer replicated, the rest as big_last_layer: chunks would be predicted faster
    t = LayerTimes(fwd=[1.0, 1.0, 1.0], bwd=[1.0, 1.0, 1.0], upd=[0.0] * 3,
                   param_bytes=[1000, 8000, 800], fc_shape={2: (10, 10)}, batch=4)
    plan = planner.choose(t, 2, NET, ("overlap-fc",), [2], 8, progress=("poll", "priority"),
                          chunks=[1000])
    assert plan.progress == "poll" and plan.chunk_bytes is None
    forced = planner.choose(t, 2, NET, ("overlap-fc",), [2], 8, progress=("priority",),
                            chunks=[1000])
    assert (forced.progress, forced.chunk_bytes) == ("priority", 1000)


def test_chunk_sizes_follow_alpha_over_beta():
    # 100 Mbit/s, alpha 50 us, P = 2: latency 100 us = 1250 bytes on the wire; x16: 16 KiB
    assert planner.chunk_sizes(AlphaBeta(50e-6, 1e8), 2) == [16 << 10, 64 << 10]
    assert planner.chunk_sizes(AlphaBeta(50e-6, 1e10), 2) == [512 << 10, 2 << 20, 4 << 20]
    assert planner.chunk_sizes(AlphaBeta(50e-6, 1e8), 1) == []


def test_the_engine_and_chunk_round_trip_through_a_checkpoints_dict():
    plan = planner.Plan("overlap", [[1], [0]], {"overlap": {"step_s": 1.0, "exposed_s": 0.1}},
                        None, "priority", 16384)
    assert planner.Plan.from_dict(plan.as_dict()) == plan
    old = {"schedule": "overlap", "groups": [[1], [0]]}              # a checkpoint before it
    assert planner.Plan.from_dict(old).progress is None
    with pytest.raises(ValueError, match="progress engine 'fast'"):
        planner.Plan.from_dict(dict(old, progress="fast"))
    with pytest.raises(ValueError, match="chunk size"):
        planner.Plan.from_dict(dict(old, progress="priority", chunk_bytes=0))
