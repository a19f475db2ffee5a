"""A stand-in for CuPy's CUDA streams and events and for its NCCL bindings, so that
NCCLCommunicator runs on the CPU: NumPy arrays play device buffers, every stream, event and
NCCL call is appended to ``LOG``, and each NCCL collective is carried out over MPI (or not at
all on one process) in the order it is issued, as NCCL does on its stream."""
from __future__ import annotations

import itertools
import sys
import types

import numpy as np

LOG: list[tuple] = []
_ids = itertools.count()


class Stream:
    def __init__(self, name="comm", non_blocking=False):
        self.name, self.ptr = name, next(_ids)

    def wait_event(self, event):
        LOG.append(("wait", self.name, event.name))

    def synchronize(self):
        LOG.append(("host-sync", self.name))


COMPUTE = Stream("compute")


class Event:
    def __init__(self, disable_timing=True):
        self.name = f"event{next(_ids)}"

    def record(self, stream):
        LOG.append(("record", self.name, stream.name))

    @property
    def done(self):
        return True

    def synchronize(self):
        LOG.append(("host-sync", self.name))


class Device:
    id = 0

    def use(self):
        pass


def _view(ptr, count, dtype):
    return np.ctypeslib.as_array((np.ctypeslib.as_ctypes_type(dtype) * count).from_address(ptr))


class NcclCommunicator:
    def __init__(self, size, uid, rank, mpi=None):
        self.size, self.rank = size, rank
        self.mpi = mpi                     # an mpi4py communicator, or None for one process

    def allReduce(self, send, recv, count, dtype, op, stream):
        LOG.append(("nccl.allReduce", count, stream_name(stream)))
        buf = _view(recv, count, DTYPES[dtype])
        if self.mpi is not None:
            from mpi4py import MPI
            self.mpi.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)

    def allGather(self, send, recv, count, dtype, stream):
        LOG.append(("nccl.allGather", count, stream_name(stream)))
        out = _view(recv, count * self.size, DTYPES[dtype])
        mine = _view(send, count, DTYPES[dtype]).copy()
        if self.mpi is not None:
            self.mpi.Allgather(mine, out)
        else:
            out[:] = mine

    def bcast(self, buf, count, dtype, root, stream):
        LOG.append(("nccl.bcast", count, stream_name(stream)))
        if self.mpi is not None:
            self.mpi.Bcast(_view(buf, count, DTYPES[dtype]), root=root)


_streams: dict[int, str] = {}


def stream_name(ptr):
    return _streams.get(ptr, "?")


DTYPES = {0: np.float16, 1: np.float32, 2: np.float64, 3: np.int64, 4: np.int32}


def install(monkeypatch, mpi_comm=None):
    """Put the stand-ins where dptrain looks for CuPy; NumPy arrays count as device arrays."""
    from dptrain.comm import nccl as nccl_module
    LOG.clear()
    cupy = types.ModuleType("cupy")
    cuda = types.ModuleType("cupy.cuda")
    nccl = types.ModuleType("cupy.cuda.nccl")
    cupy.cuda, cuda.nccl = cuda, nccl
    cupy.empty, cupy.ascontiguousarray = np.empty, np.ascontiguousarray

    def make_stream(non_blocking=False):
        s = Stream("comm")
        _streams[s.ptr] = s.name
        return s
    cuda.Stream, cuda.Event, cuda.Device = make_stream, Event, Device
    cuda.get_current_stream = lambda: COMPUTE
    nccl.available = True
    nccl.get_unique_id = lambda: b"uid"
    # each NCCL communicator is a channel of its own (a dup for a communication thread is
    # one): every stand-in gets its own MPI communicator, duplicated collectively as NCCL's
    # initialisation is collective
    nccl.NcclCommunicator = lambda size, uid, rank: NcclCommunicator(
        size, uid, rank, mpi_comm.Dup() if mpi_comm is not None else None)
    nccl.NCCL_SUM = 0
    nccl.NCCL_FLOAT16, nccl.NCCL_FLOAT32, nccl.NCCL_FLOAT64, nccl.NCCL_INT64, nccl.NCCL_INT32 = range(5)
    for name, module in (("cupy", cupy), ("cupy.cuda", cuda), ("cupy.cuda.nccl", nccl)):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(nccl_module.NCCLCommunicator, "_on_device", staticmethod(lambda a: True))
    monkeypatch.setattr(nccl_module, "_ptr", lambda a: a.ctypes.data)
