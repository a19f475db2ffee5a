"""The input pipeline: the next step's batch is assembled and copied while this step runs.

On a GPU each step's rank-local arrays are written into page-locked host buffers and copied
to device buffers on a CUDA stream of their own; the computing stream waits for the copy's
event when the step takes its batch. Two sets of device buffers alternate, so the copy of
step k+1 waits only for step k-1 to be done with its set, never for step k. On a CPU the
batch is simply assembled when it is taken (there is nothing to overlap with).

The device side is a ``Transfer`` (below for CuPy; tests use a recording fake), so the
ordering logic is tested without a GPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


class HostTransfer:
    """No device: arrays stay where they are."""
    asynchronous = False

    def copy(self, slot: int, host_arrays):
        return list(host_arrays), None

    def wait(self, ready) -> None:
        pass

    def release(self, slot: int) -> None:
        pass


class CupyTransfer:
    """Pinned staging buffers, a copy stream, and per-slot device buffers reused by shape."""
    asynchronous = True

    def __init__(self, cupy):
        self.cupy = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._pinned: dict = {}       # (slot, index, shape, dtype) -> page-locked host array
        self._device: dict = {}       # same key -> device array
        self._free: dict = {}         # slot -> event after the last step that read it
        self._copied: dict = {}       # slot -> event after its last host-to-device copy

    def _buffers(self, key, shape, dtype):
        if key not in self._device:
            from ..backend import pinned_empty
            n = int(np.prod(shape))
            self._pinned[key] = pinned_empty(n, dtype).reshape(shape)
            self._device[key] = self.cupy.empty(shape, dtype=dtype)
        return self._pinned[key], self._device[key]

    def copy(self, slot: int, host_arrays):
        copied = self._copied.pop(slot, None)
        if copied is not None:          # this slot's last copy (two steps ago) left the
            copied.synchronize()        # pinned buffers: long done, so the host barely waits
        free = self._free.pop(slot, None)
        if free is not None:            # the device buffers may still be read by the step
            self.stream.wait_event(free)    # before: the copy stream waits, not the host
        out = []
        for index, a in enumerate(host_arrays):
            pinned, device = self._buffers((slot, index, a.shape, a.dtype.str), a.shape, a.dtype)
            np.copyto(pinned, a)
            device.set(pinned, stream=self.stream)
            out.append(device)
        ready = self.cupy.cuda.Event(disable_timing=True)
        ready.record(self.stream)
        self._copied[slot] = ready
        return out, ready

    def wait(self, ready) -> None:
        self.cupy.cuda.get_current_stream().wait_event(ready)

    def release(self, slot: int) -> None:
        """Everything queued so far on the computing stream is the last use of ``slot``."""
        done = self.cupy.cuda.Event(disable_timing=True)
        done.record(self.cupy.cuda.get_current_stream())
        self._free[slot] = done


def make_transfer():
    """The transfer for the array module in use: CuPy streams on a GPU, none on a CPU."""
    from .. import backend
    return HostTransfer() if backend.xp is np else CupyTransfer(backend.cupy_module())


@dataclass
class _Loaded:
    step: int
    ids: np.ndarray
    arrays: list
    ready: object


class Prefetcher:
    """``take(step, ids, weights)`` gives the device arrays of ``load(step, ids, weights)``
    (a list of host arrays); ``prefetch(step, ids, weights)`` starts them early. A prefetch for other ids than those
    finally taken is dropped, so a sampler that changes its mind costs time, not results."""

    def __init__(self, load, transfer=None):
        self.load = load
        self.transfer = transfer or HostTransfer()
        self._next: _Loaded | None = None
        self._last_slot = None
        self.hits = self.misses = 0

    def _start(self, step: int, ids, weights) -> _Loaded:
        arrays, ready = self.transfer.copy(step % 2, self.load(step, ids, weights))
        return _Loaded(step, np.asarray(ids), arrays, ready)

    def prefetch(self, step: int, ids, weights=None) -> None:
        if self.transfer.asynchronous:
            self._next = self._start(step, ids, weights)

    def take(self, step: int, ids, weights=None) -> list:
        loaded, self._next = self._next, None
        if loaded is not None and loaded.step == step and np.array_equal(loaded.ids, ids):
            self.hits += 1
        else:
            self.misses += loaded is not None
            loaded = self._start(step, ids, weights)
        if self._last_slot is not None:
            self.transfer.release(self._last_slot)
        self._last_slot = step % 2
        self.transfer.wait(loaded.ready)
        return loaded.arrays
