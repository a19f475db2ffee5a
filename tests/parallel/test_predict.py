"""The scaling model against timelines worked out by hand."""
import pytest

from dptrain.comm.emulated import AlphaBeta
from dptrain.parallel.predict import LayerTimes, buckets_of, scaling_table, simulate

# bandwidth 8 bytes/s -> beta = 1 s per byte; with P = 2 an allreduce of n bytes takes n s
NET = AlphaBeta(latency_s=0.0, bandwidth_bps=64.0)


def two_layers(b0=2, b1=1):
    # bytes chosen so that (P = 2) allreduce(b) = b / 8 * 8 ... = b seconds; see NET
    return LayerTimes(fwd=[1.0, 1.0], bwd=[1.0, 1.0], upd=[0.0, 0.0],
                      param_bytes=[b0 * 8, b1 * 8], batch=4)


def test_alpha_beta_unit():
    assert NET.allreduce(2, 8) == pytest.approx(1.0)


def test_blocking_adds_communication_to_computation():
    r = simulate(two_layers(2, 0.5), 2, NET, "blocking", bucket_bytes=1)
    assert r["step_s"] == pytest.approx(4 + 2 + 0.5) and r["exposed_s"] == pytest.approx(2.5)


def test_overlap_timeline_by_hand():
    # step 1: fwd 0-2; bwd layer 1 2-3 -> bucket [1] on the wire 3-3.5; bwd layer 0 3-4 ->
    # bucket [0] 4-6. Step 2 starts at 4: layer 0 waits for 6, runs 6-7; layer 1 runs 7-8;
    # backward 8-10. Step time 10 - 4 = 6: 2 s of the 2.5 s of communication are exposed.
    r = simulate(two_layers(2, 0.5), 2, NET, "overlap", bucket_bytes=1)
    assert r["step_s"] == pytest.approx(6.0) and r["exposed_s"] == pytest.approx(2.0)
    # the first layer's reduction is what blocks: a cheap one hides completely
    r = simulate(two_layers(0.5, 2), 2, NET, "overlap", bucket_bytes=1)
    # bucket [1] 3-5, bucket [0] 5-5.5; step 2: layer 0 waits until 5.5 (1.5 s), runs to 6.5,
    # layer 1 ready at 5, runs to 7.5; backward to 9.5: step 5.5
    assert r["step_s"] == pytest.approx(5.5)


def test_one_rank_has_no_communication():
    r = simulate(two_layers(), 1, NET, "overlap", bucket_bytes=1)
    assert r["step_s"] == pytest.approx(4.0) and r["comm_s"] == 0


def test_buckets_follow_the_byte_cap_in_reverse_order():
    t = LayerTimes([0] * 5, [0] * 5, [0] * 5, [10, 0, 10, 10, 10])
    assert buckets_of(t, 20) == [[4, 3], [2, 0]]
    assert buckets_of(t, 20, exclude={3}) == [[4, 2], [0]]


def test_fc_replication_sends_activations_instead_of_weights():
    # one Dense 100 -> 100 layer, 40000 gradient bytes; global batch 4 on 2 ranks: rows 2
    t = LayerTimes(fwd=[0.0], bwd=[0.0], upd=[0.0], param_bytes=[40_000], fc_shape={0: (100, 100)},
                   batch=2)
    net = AlphaBeta(0.0, 8.0)                      # 1 byte per second
    blocking = simulate(t, 2, net, "blocking")
    fc = simulate(t, 2, net, "overlap-fc", fc_layers=[0], global_batch=4, flops_per_s=1e12)
    assert blocking["comm_s"] == pytest.approx(40_000)                 # 2 (P-1)/P n
    # two allgathers of 2 ranks x 2 rows x 100 floats: (P-1)/P x 1600 bytes each
    assert fc["comm_s"] == pytest.approx(2 * 800)
    assert fc["step_s"] < blocking["step_s"] / 20


def test_weak_and_strong_scaling_speedups():
    t = LayerTimes(fwd=[1.0], bwd=[1.0], upd=[0.0], param_bytes=[8], batch=4)
    weak = scaling_table(t, AlphaBeta(0.0, 1e12), [1, 2, 4], ["blocking"])
    assert [round(r["speedup"], 6) for r in weak] == [1, 2, 4]                # free network
    strong = scaling_table(t, AlphaBeta(0.0, 1e12), [1, 2, 4], ["blocking"], global_batch=4)
    assert [r["per_rank_batch"] for r in strong] == [4, 2, 1]
    assert [round(r["speedup"], 6) for r in strong] == [1, 2, 4]


def test_dependency_bound():
    from dptrain.parallel.predict import dependency_bound
    # layer 1's bucket is ready after 1 s of backward and needed after 1 s more of backward
    # plus layer 0's forward (1 s): 2 s window for 0.5 s of communication -> hidden;
    # layer 0's bucket is ready at the end of backward and needed at once -> nothing hidden
    t = two_layers(2, 0.5)
    assert dependency_bound(t, 2, NET, bucket_bytes=1) == pytest.approx(0.5 / 2.5)
    assert dependency_bound(t, 2, NET, bucket_bytes=10**9) == 0.0      # one bucket: no overlap


def test_dependency_bound_counts_overlapping_windows_once():
    from dptrain.parallel.predict import dependency_bound
    # three layers, each its own bucket of 10 s: windows [1, 4] (layer 2), [2, 4] ... overlap
    t = LayerTimes(fwd=[1.0, 1.0, 1.0], bwd=[1.0, 1.0, 1.0], upd=[0.0] * 3,
                   param_bytes=[80, 80, 80], batch=1)
    # ready (from the start of backward): layer 2 at 1, layer 1 at 2, layer 0 at 3;
    # needed: layer 0 at 3, layer 1 at 4, layer 2 at 5 -> windows [1,5], [2,4], [3,3]
    # per bucket min(10, w) = 4 + 2 + 0 = 6, but one link: the union [1, 5] = 4
    assert dependency_bound(t, 2, NET, bucket_bytes=1) == pytest.approx(4 / 30)
