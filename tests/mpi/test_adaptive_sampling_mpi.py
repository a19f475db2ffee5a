"""Each reading of Adaptive Sampling (--as-bound, --as-refresh, --as-counter) trains on P
ranks exactly as on one: the sampler runs on every rank from all-gathered numbers, and the
every-bin refresh's probe is evaluated in shares and gathered, the same collectives on every
rank. Run with: mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_adaptive_sampling_mpi.py
"""
import pytest

from dptrain.comm.local import LocalCommunicator
from test_data_parallel import assert_same, train, world

READINGS = [
    {"as_bound": "eq67"},
    {"as_refresh": "every-bin", "as_refresh_per_bin": 3},
    {"as_bound": "eq67", "as_refresh": "every-bin", "as_refresh_per_bin": 7},   # 70: not / 4
    {"as_counter": "samples"},
    {"as_bound": "eq67", "as_counter": "samples", "as_weighting": "none"},
    {"as_refresh": "every-bin", "accumulate": 2},      # observed once per batch, not per micro
]


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("reading", READINGS, ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()))
def test_as_readings_rank_count_invariance(reading, timing):
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:150", sync_bn=True, batch_size=24,
              sampler="as", as_beta=2, epochs=2, max_steps=None, **reading)
    assert_same(train(world(), **kw), train(LocalCommunicator(), **kw))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["overlap", "overlap-fc"])
def test_every_bin_probe_with_overlapped_updates(sync):
    """The probe evaluates the model after the step's update: with overlapped schedules that
    update is still in flight when the sampler asks, and must be completed first."""
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:150", sync_bn=True, batch_size=24,
              sampler="as", as_beta=1, as_refresh="every-bin", as_refresh_per_bin=2, sync=sync,
              epochs=2, max_steps=None)
    assert_same(train(world(), **kw), train(LocalCommunicator(), **{**kw, "sync": "blocking"}))
