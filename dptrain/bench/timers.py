"""Timers for the per-layer profile: ``start(part)`` and ``stop(part)`` around each named part
of a step, then ``read()`` once after the step for every part's duration in seconds.

    HostTimer    time.perf_counter on the host: on a CPU the host does the work itself
    DeviceTimer  a pair of CUDA events per part, recorded on the current stream; nothing
                 waits for the GPU until ``read()``, so timing does not change what it times

A part is started and stopped at most once per step; ``read()`` returns the parts in the
order they were stopped and starts the next step afresh.
"""
from __future__ import annotations

import time

from .. import backend


class HostTimer:
    source = "time.perf_counter"

    def __init__(self, clock=time.perf_counter):
        self.clock = clock
        self._started: dict[str, float] = {}
        self._spans: dict[str, float] = {}

    def start(self, part: str) -> None:
        self._started[part] = self.clock()

    def stop(self, part: str) -> None:
        self._spans[part] = self.clock() - self._started.pop(part)

    def read(self) -> dict[str, float]:
        spans, self._spans = self._spans, {}
        return spans


class DeviceTimer:
    source = "CUDA events"

    def __init__(self, cuda=None):
        self.cuda = cuda if cuda is not None else backend.cupy_module().cuda
        self.events: dict[str, tuple] = {}      # part -> (start, end), made once, reused
        self._stopped: list[str] = []

    def _pair(self, part: str) -> tuple:
        pair = self.events.get(part)
        if pair is None:                         # timing events (CuPy's default)
            pair = self.events[part] = (self.cuda.Event(), self.cuda.Event())
        return pair

    def start(self, part: str) -> None:
        self._pair(part)[0].record(self.cuda.get_current_stream())

    def stop(self, part: str) -> None:
        self.events[part][1].record(self.cuda.get_current_stream())
        self._stopped.append(part)

    def read(self) -> dict[str, float]:
        """Wait for the step's last event (one stream: every earlier one is then done too),
        then read each part's elapsed time."""
        if not self._stopped:
            return {}
        self.events[self._stopped[-1]][1].synchronize()
        spans = {part: self.cuda.get_elapsed_time(*self.events[part]) / 1e3
                 for part in self._stopped}
        self._stopped = []
        return spans


def timer_for_device():
    """CUDA events when the arrays live on a GPU, the host clock otherwise."""
    return HostTimer() if backend.device_name == "cpu" else DeviceTimer()
