"""The real capture backend (dptrain/train/graph_capture.py) on the CPU, over the CuPy and
NCCL stand-ins of tests/nccl_standin.py extended with stream capture: what is recorded
between begin and end, on which stream, and that everything is put back when the captured
function fails."""
import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))

import nccl_standin  # noqa: E402
from dptrain.comm import order_check  # noqa: E402
from dptrain.comm.local import LocalCommunicator  # noqa: E402
from dptrain.comm.nccl import NCCLCommunicator  # noqa: E402
from dptrain.train import graph_capture  # noqa: E402

LOG = nccl_standin.LOG


class CaptureStream(nccl_standin.Stream):
    def __init__(self, non_blocking=False):
        super().__init__("capture")
        nccl_standin._streams[self.ptr] = self.name
        self.non_blocking = non_blocking

    def __enter__(self):
        LOG.append(("current", self.name))
        return self

    def __exit__(self, *exc):
        LOG.append(("current", "compute"))

    def begin_capture(self, mode=None):
        LOG.append(("begin", self.name, mode))

    def end_capture(self):
        LOG.append(("end", self.name))
        return "graph"


class Pool:
    def malloc(self, size):
        return size


@pytest.fixture
def setup(monkeypatch):
    nccl_standin.install(monkeypatch)
    comm = NCCLCommunicator(LocalCommunicator())     # its own stream is made here
    cuda = sys.modules["cupy.cuda"]
    cuda.Stream, cuda.MemoryPool = CaptureStream, Pool

    @contextlib.contextmanager
    def using_allocator(malloc):
        LOG.append(("allocator", type(malloc.__self__).__name__))
        try:
            yield
        finally:
            LOG.append(("allocator", "default"))
    cuda.using_allocator = using_allocator

    class DefaultPool:
        def free_all_blocks(self):
            LOG.append(("default pool", "free_all_blocks"))
    monkeypatch.setattr(sys.modules["cupy"], "get_default_memory_pool", DefaultPool,
                        raising=False)
    LOG.clear()
    return graph_capture.CupyCapture(), comm


def test_nccl_reductions_are_forked_from_and_joined_to_the_capture_stream(setup):
    capture, comm = setup
    assert capture.stream.non_blocking                 # no implicit legacy-stream dependency
    graph, out = capture.capture(lambda: comm.iallreduce(np.ones(4, np.float32)).wait() or 7,
                                 capture.new_pool(), [comm])
    assert (graph, out) == ("graph", 7)
    inside = LOG[LOG.index(("begin", "capture", None)) + 1:LOG.index(("end", "capture"))]
    (_, ready, on), (_, waiter, waited), call, (_, done, on2), (_, joiner, joined) = inside
    assert on == "capture" and waiter == "comm" and waited == ready       # fork
    assert call == ("nccl.allReduce", 4, "comm")
    assert on2 == "comm" and joiner == "capture" and joined == done      # join
    # the eager steps' cached blocks go back to the device before the private pool fills
    assert LOG[:3] == [("default pool", "free_all_blocks"), ("allocator", "Pool"),
                       ("current", "capture")]
    assert comm.compute_stream is nccl_standin.COMPUTE                   # put back


def test_a_failing_capture_is_ended_and_everything_put_back(setup):
    capture, comm = setup

    def fails():
        raise RuntimeError("cudaErrorStreamCaptureUnsupported")
    with pytest.raises(RuntimeError, match="Unsupported"):
        capture.capture(fails, capture.new_pool(), [comm])
    assert ("end", "capture") in LOG and LOG[-1] == ("allocator", "default")
    assert comm.compute_stream is nccl_standin.COMPUTE


def test_the_nccl_communicator_is_found_under_the_order_checker(setup):
    _, comm = setup
    assert graph_capture.nccl_communicators(order_check.checked(comm, "strict")) == [comm]
    assert graph_capture.nccl_communicators(LocalCommunicator()) == []
