"""The network emulator holds operations for the alpha-beta model's time (injected clock)."""
import numpy as np
import pytest

from dptrain.comm.emulated import AlphaBeta, EmulatedCommunicator, parse_spec
from dptrain.comm.local import LocalCommunicator


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.slept = []

    def __call__(self):
        return self.now

    def sleep(self, s):
        self.slept.append(s)
        self.now += s


class FourRanks(LocalCommunicator):
    size = 4

    def __init__(self, clock, work_s=0.0):
        self.clock, self.work_s = clock, work_s

    def allreduce(self, buf):
        self.clock.now += self.work_s          # the real operation takes some time itself

    def allgather(self, arr):
        self.clock.now += self.work_s
        return np.stack([arr] * 4)

    def dup(self):
        return FourRanks(self.clock, self.work_s)


def test_spec_parsing():
    assert parse_spec("bw=10Gbit,lat=20us") == pytest.approx({"bandwidth_bps": 1e10, "latency_s": 2e-5})
    assert parse_spec("bw=100Mbit")["bandwidth_bps"] == 1e8
    assert parse_spec("lat=1ms, bw=1GB")["bandwidth_bps"] == 8e9
    for bad in ("bw=fast", "bw=10Gbit,lat=5parsecs", "speed=1Gbit", "lat=1us"):
        with pytest.raises(ValueError, match="--net-emulate"):
            parse_spec(bad)


def test_model_formulas():
    m = AlphaBeta(latency_s=1e-5, bandwidth_bps=8e9)          # 1 GB/s: beta = 1 ns per byte
    assert m.allreduce(4, 1_000_000) == pytest.approx(2 * 3 * 1e-5 + 2 * 3 / 4 * 1e6 * 1e-9)
    assert m.allgather(4, 4_000_000) == pytest.approx(3 * 1e-5 + 3 / 4 * 4e6 * 1e-9)
    assert m.allreduce(1, 10**9) == 0 and m.barrier(4) == pytest.approx(6e-5)


def test_blocking_operations_are_held_until_the_model_time():
    clock = FakeClock()
    model = AlphaBeta(1e-5, 8e9)
    comm = EmulatedCommunicator(FourRanks(clock, work_s=1e-4), model, clock=clock, sleep=clock.sleep)
    buf = np.zeros(250_000, dtype=np.float32)                   # 1 MB
    start = clock.now
    comm.allreduce(buf)
    assert clock.now - start == pytest.approx(model.allreduce(4, 1_000_000))
    # an operation slower than the model is not held further
    slow = EmulatedCommunicator(FourRanks(clock, work_s=1.0), model, clock=clock, sleep=clock.sleep)
    start, n_sleeps = clock.now, len(clock.slept)
    slow.allreduce(buf)
    assert clock.now - start == pytest.approx(1.0) and len(clock.slept) == n_sleeps
    start = clock.now
    comm.allgather(np.zeros(100_000, dtype=np.float64))
    assert clock.now - start == pytest.approx(model.allgather(4, 4 * 800_000))


def test_nonblocking_handle_completes_at_the_model_time():
    clock = FakeClock()
    model = AlphaBeta(0.0, 8e6)                                 # 1 MB/s
    comm = EmulatedCommunicator(FourRanks(clock), model, clock=clock, sleep=clock.sleep)
    buf = np.zeros(1000, dtype=np.float32)                      # 4 kB -> 6 ms
    start = clock.now
    h = comm.iallreduce(buf)
    assert not h.test()
    clock.now += 0.004                                          # computation meanwhile
    assert not h.test()
    h.wait()                                                    # only the remaining 2 ms block
    assert clock.now - start == pytest.approx(model.allreduce(4, 4000))
    assert clock.slept[-1] == pytest.approx(0.002)
    assert h.test()


def test_concurrent_operations_share_the_link():
    clock = FakeClock()
    model = AlphaBeta(0.0, 8e6)                                 # 1 MB/s
    comm = EmulatedCommunicator(FourRanks(clock), model, clock=clock, sleep=clock.sleep)
    other = comm.dup()                                          # e.g. a communication thread's
    a = comm.iallreduce(np.zeros(1000, dtype=np.float32))       # 6 ms
    b = other.iallreduce(np.zeros(1000, dtype=np.float32))      # queued behind a: ends at 12 ms
    start = clock.now
    b.wait()
    assert clock.now - start == pytest.approx(0.012)
    a.wait()                                                    # already over
    assert clock.now - start == pytest.approx(0.012)
