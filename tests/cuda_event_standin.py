"""A stand-in for CuPy's timing events (``cupy.cuda.Event``, ``get_elapsed_time``), built on
the stream and event stand-ins of nccl_standin.py and logging to its ``LOG``: each record
takes the host clock as the event's time, and an elapsed time can be read only once both
events are known to be complete (a host synchronisation on an event recorded no earlier),
as CUDA answers cudaErrorNotReady otherwise."""
from __future__ import annotations

import itertools
import time
import types

import nccl_standin
from nccl_standin import COMPUTE, LOG

_order = itertools.count()


class TimedEvent(nccl_standin.Event):
    completed_up_to = -1            # the latest record a host synchronisation has waited for

    def __init__(self, block=False, disable_timing=False, interprocess=False):
        super().__init__(disable_timing)
        self.timing = not disable_timing
        self.seq = self.time = None

    def record(self, stream=None):
        super().record(stream)
        self.seq, self.time = next(_order), time.perf_counter()

    def synchronize(self):
        super().synchronize()
        TimedEvent.completed_up_to = max(TimedEvent.completed_up_to, self.seq)


def get_elapsed_time(start: TimedEvent, end: TimedEvent) -> float:
    """Milliseconds from start to end, as cupy.cuda.get_elapsed_time."""
    if not (start.timing and end.timing):
        raise RuntimeError("cudaErrorInvalidResourceHandle: an event without timing")
    if end.seq is None or start.seq is None or max(start.seq, end.seq) > TimedEvent.completed_up_to:
        raise RuntimeError("cudaErrorNotReady: an event not yet complete")
    LOG.append(("elapsed", start.name, end.name))
    return (end.time - start.time) * 1e3


def cuda() -> types.SimpleNamespace:
    """The ``cupy.cuda`` attributes a DeviceTimer uses; LOG starts empty."""
    LOG.clear()
    return types.SimpleNamespace(Event=TimedEvent, get_current_stream=lambda: COMPUTE,
                                 get_elapsed_time=get_elapsed_time)
