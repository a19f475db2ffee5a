"""Peak GPU memory (dptrain/bench/memory.py), its logic on the CPU through a stand-in pool."""
import types

import pytest

from dptrain import backend
from dptrain.bench import memory


class Pool:
    """CuPy's pool as the counter sees it: malloc, and bytes in use (freed when released)."""

    def __init__(self):
        self.used, self.reserved, self.freed_all = 0, 0, False

    def malloc(self, size):
        self.used += size
        self.reserved = max(self.reserved, self.used)
        return Block(self, size)

    def used_bytes(self):
        return self.used

    def total_bytes(self):
        return self.reserved

    def free_all_blocks(self):
        self.freed_all = True


class Block:
    def __init__(self, pool, size):
        self.pool, self.size = pool, size

    def release(self):
        self.pool.used -= self.size


def test_the_counter_keeps_the_peak_of_bytes_in_use():
    counter = memory.CountingAllocator(Pool())
    a = counter.malloc(100)
    b = counter.malloc(50)
    a.release()
    c = counter.malloc(120)               # 170 in use: the peak
    b.release()
    c.release()
    counter.malloc(10)
    assert counter.peak == 170


def fake_cupy(pool):
    state = {"allocator": "default"}
    cuda = types.SimpleNamespace(
        MemoryPool=lambda: pool, get_allocator=lambda: state["allocator"],
        set_allocator=lambda fn: state.update(allocator=fn))
    return types.SimpleNamespace(cuda=cuda), state


@pytest.mark.parametrize("fails", [False, True])
def test_a_step_is_measured_on_a_fresh_pool_and_the_allocator_restored(monkeypatch, fails):
    pool = Pool()
    cupy, state = fake_cupy(pool)
    monkeypatch.setattr(backend, "host_reads_are_free", lambda: False)
    monkeypatch.setattr(backend, "cupy_module", lambda: cupy)
    monkeypatch.setattr(backend, "synchronize", lambda: None)

    def step(model, batch, steps, warmup):
        assert (model, batch) == ("thesis-cnn", 64)
        weights = state["allocator"](2 * 2**20)           # through the counter
        for _ in range(steps):
            state["allocator"](3 * 2**20).release()
        if fails:
            raise RuntimeError("out of memory")
        weights.release()

    if fails:
        with pytest.raises(RuntimeError):
            memory.step_peak_mb("thesis-cnn", 64, run=step)
    else:
        got = memory.step_peak_mb("thesis-cnn", 64, run=step)
        assert got == {"peak_mb": 5.0, "reserved_mb": 5.0} and pool.freed_all
    assert state["allocator"] == "default"


def test_nothing_is_measured_on_the_cpu():
    assert memory.step_peak_mb("mlp", 8, run=lambda *a: pytest.fail("ran")) is None
