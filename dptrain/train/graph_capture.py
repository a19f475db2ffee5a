"""CUDA stream capture with CuPy: what --cuda-graph records a training step with.

The graph_step module talks to a capture backend through three calls, so that the CPU tests
can put a stand-in behind them (tests/cuda_graph_standin.py) that fails on what real capture
forbids:

    pool = backend.new_pool()               memory kept for the graph's whole life
    graph, outputs = backend.capture(fn, pool, comms)
    backend.launch(graph)                   replay, on the current stream

``capture`` runs ``fn`` once on a side stream in capture mode: no kernel runs, every kernel
and copy it queues is recorded, and every array it allocates comes from ``pool``. The graph
then reads and writes those addresses at every replay, so ``pool`` must outlive the graph and
must never serve anything else (a private CuPy MemoryPool, used only inside ``capture``):
arrays freed during the capture go back to it and are handed out again later in the same
capture, which the replay repeats in the same order. Nothing is allocated at replay.

``comms``: NCCL communicators whose reductions belong in the graph. Each orders its own
stream after the stream it calls the computing one (comm/nccl.py); during the capture that
must be the capture stream, so that the event fork and join are recorded with the
reductions (CUDA's cross-stream capture) instead of running at once on the real streams.
"""
from __future__ import annotations

from .. import backend


class CupyCapture:
    def __init__(self):
        self.cupy = backend.cupy_module()
        # capture needs a stream other than the legacy default one; non-blocking, so that no
        # implicit dependency on the legacy stream is recorded (cudaErrorStreamCaptureImplicit)
        self.stream = self.cupy.cuda.Stream(non_blocking=True)

    def new_pool(self):
        return self.cupy.cuda.MemoryPool()

    def capture(self, fn, pool, comms=()):
        cupy = self.cupy
        # The default pool still caches the eager warm-up step's freed blocks; the private
        # pool is about to take the same working set again: give those back to the device
        # first, or a graphed run holds twice the eager one's memory.
        cupy.get_default_memory_pool().free_all_blocks()
        swapped = [(c, c.compute_stream) for c in comms]
        for c, _ in swapped:
            c.compute_stream = self.stream
        try:
            with cupy.cuda.using_allocator(pool.malloc), self.stream:
                # CuPy's default, relaxed: the private pool starts empty and grows with
                # cudaMalloc during the capture, which the stricter modes refuse
                self.stream.begin_capture()
                try:
                    outputs = fn()
                except BaseException:
                    try:
                        self.stream.end_capture()       # leave capture mode; the graph is void
                    except Exception:
                        pass
                    raise
                graph = self.stream.end_capture()
        finally:
            for c, stream in swapped:
                c.compute_stream = stream
        return graph, outputs

    def launch(self, graph) -> None:
        graph.launch(self.cupy.cuda.get_current_stream())


def nccl_communicators(comm) -> list:
    """The NCCL communicators under ``comm`` (order-checked or emulated wrappers included)."""
    from ..comm.nccl import NCCLCommunicator
    seen, found = set(), []
    stack = [comm]
    while stack:
        c = stack.pop()
        if c is None or id(c) in seen:
            continue
        seen.add(id(c))
        if isinstance(c, NCCLCommunicator):
            found.append(c)
            continue
        stack += [getattr(c, name, None) for name in ("inner", "comm", "_inner", "wrapped")]
    return found


def default():
    """The real backend on a GPU, None on the CPU (capture needs CuPy)."""
    return None if backend.host_reads_are_free() else CupyCapture()
