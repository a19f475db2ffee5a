"""NCCLCommunicator's ordering of events, streams and NCCL calls, checked on the CPU with a
stand-in for CuPy and NCCL (tests/nccl_standin.py); the real 2-GPU run is a GPU-machine check."""
import numpy as np

import nccl_standin  # noqa: E402  (tests/ is on sys.path via conftest)
from dptrain.comm.local import LocalCommunicator
from dptrain.comm.nccl import NCCLCommunicator


def test_a_reduction_is_ordered_by_events_and_the_host_never_waits(monkeypatch):
    nccl_standin.install(monkeypatch)
    c = NCCLCommunicator(LocalCommunicator())
    nccl_standin.LOG.clear()
    h = c.iallreduce(np.ones(5, dtype=np.float32))
    posted = list(nccl_standin.LOG)
    h.wait()
    log = nccl_standin.LOG
    (_, ready, on), (_, waiter, waited), call, (_, done, on2), (_, consumer, consumed) = log
    assert on == "compute" and waiter == "comm" and waited == ready       # after the gradients
    assert call == ("nccl.allReduce", 5, "comm")                           # on its own stream
    assert on2 == "comm" and consumer == "compute" and consumed == done    # read after it ends
    assert len(posted) == 4 and not [e for e in log if e[0] == "host-sync"]


def test_gathers_and_broadcasts_follow_the_same_order(monkeypatch):
    nccl_standin.install(monkeypatch)
    c = NCCLCommunicator(LocalCommunicator())
    nccl_standin.LOG.clear()
    out = c.allgather(np.arange(3.0))
    np.testing.assert_array_equal(out, [[0.0, 1.0, 2.0]])
    c.bcast(np.zeros(2))
    kinds = [e[0] for e in nccl_standin.LOG]
    assert kinds == ["record", "wait", "nccl.allGather", "record", "wait",
                     "record", "wait", "nccl.bcast", "record", "wait"]
