"""Peak GPU memory of dptrain's training step, next to PyTorch's ``max_memory_allocated``.

PyTorch's number is the peak of bytes held by live tensors in its caching allocator. The
same thing for CuPy is the peak of its memory pool's ``used_bytes()`` (bytes held by live
arrays, in the pool's 512-byte blocks): it can rise only when an array is allocated, so a
wrapper around the pool's ``malloc`` that samples it after every allocation sees the exact
peak. The pool's ``total_bytes()`` is what it reserved from the device (freed arrays kept
for reuse), the counterpart of ``torch.cuda.max_memory_reserved``.

Both are measured on the same work: the model, its optimiser state, eight random batches on
the device and a few training steps (stepbench.time_training_step). The measurement runs
apart from the timed steps (the Python wrapper costs a call per allocation). Neither side
counts memory outside its allocator (the CUDA context, cuBLAS/cuDNN handles); PyTorch's
allocator also serves its cuBLAS and cuDNN workspaces, CuPy's pool not cuBLAS's. On the CPU
nothing is measured: the single-configuration bench reports the process's peak RSS.
"""
from __future__ import annotations

from .. import backend
from .stepbench import time_training_step


class CountingAllocator:
    """A CuPy allocator (``cupy.cuda.set_allocator(counter.malloc)``) over ``pool`` that keeps
    the peak of the pool's bytes in use."""

    def __init__(self, pool):
        self.pool, self.peak = pool, 0

    def malloc(self, size: int):
        mem = self.pool.malloc(size)
        used = self.pool.used_bytes()
        if used > self.peak:
            self.peak = used
        return mem


def step_peak_mb(model_name: str, batch: int, steps: int = 3, run=time_training_step) -> dict | None:
    """{"peak_mb", "reserved_mb"} of ``steps`` training steps (after one warm-up) on the GPU
    in use, each step's arrays allocated from a fresh pool; None on the CPU."""
    if backend.host_reads_are_free():
        return None
    cupy = backend.cupy_module()
    pool = cupy.cuda.MemoryPool()
    counter = CountingAllocator(pool)
    previous = cupy.cuda.get_allocator()
    cupy.cuda.set_allocator(counter.malloc)
    try:
        run(model_name, batch, steps, 1)
        backend.synchronize()
    finally:
        cupy.cuda.set_allocator(previous)
    reserved = pool.total_bytes()
    pool.free_all_blocks()
    return {"peak_mb": counter.peak / 2**20, "reserved_mb": reserved / 2**20}
