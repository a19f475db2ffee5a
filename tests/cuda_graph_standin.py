"""A stand-in for CUDA stream capture (dptrain/train/graph_capture.py's backend), on NumPy.

It models what a real capture and replay do, so that the CPU tests show a step is capturable
in structure and that what the host must do around a replay is done:

- ``capture(fn, pool)`` runs ``fn`` (Python runs, as it does under a real capture) and then
  undoes every change to array contents (a capture runs no kernel), keeping the host-side
  changes. While it runs, what a real capture forbids raises CaptureViolation: a host read
  of a device value (``float``/``int``/``bool``/``.item()``/``.tolist()`` of a DeviceArray,
  ``backend.to_numpy``, ``backend.HostCopy``), a stream synchronisation
  (``backend.synchronize``), a host allocation (``backend.pinned_empty``).
- ``launch(graph)`` replays the device work only: the host-side state of the objects the step
  touches is put back as it was when the capture began (the addresses the graph recorded),
  ``fn`` is re-run, every array it produced is copied into the array that held that place
  after the capture (the graph writes the same addresses every time), and the host-side
  state is then put back as it was before the launch: Python counters, lists and bindings
  advance only where the caller advances them itself, as after a real replay.
- The graph holds its memory pool weakly: a launch after the pool was dropped raises (a real
  graph would write into memory handed out again).

Objects walked for host state: those of dptrain's layers, models, losses, optimisers,
DataParallel, its statistics and watch, and gradient buckets reachable from ``roots``;
communicators, threads and timers are left alone.
"""
from __future__ import annotations

import weakref

import numpy as np

from dptrain import backend

WALKED = ("dptrain.nn", "dptrain.optim", "dptrain.models", "dptrain.parallel.data_parallel",
          "dptrain.parallel.nonfinite", "dptrain.comm.buckets", "dptrain.train.graph_step")


class CaptureViolation(AssertionError):
    """Something a real CUDA stream capture refuses, or that would break its replay."""


_capturing = [False]


def _forbid(what: str) -> None:
    if _capturing[0]:
        raise CaptureViolation(f"{what} inside a CUDA graph capture")


class DeviceArray(np.ndarray):
    """A NumPy array that plays a device array: reading it on the host during capture fails.
    Reductions give 0-d DeviceArrays, as CuPy's give 0-d device arrays (NumPy's give host
    scalars, which would hide a host read of a loss or a norm)."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        return super().__array_wrap__(arr, context, False)

    def __getitem__(self, key):            # an element is a 0-d device array too
        return _kept(super().__getitem__(key))

    def argmax(self, *args, **kwargs):
        return _kept(super().argmax(*args, **kwargs))

    def argmin(self, *args, **kwargs):
        return _kept(super().argmin(*args, **kwargs))

    def __float__(self):
        _forbid("float() of a device array")
        return float(np.asarray(self))

    def __int__(self):
        _forbid("int() of a device array")
        return int(np.asarray(self))

    def __index__(self):
        _forbid("index from a device array")
        return np.asarray(self).__index__()

    def __bool__(self):
        _forbid("a Python branch on a device value")
        return bool(np.asarray(self))

    def item(self, *args):
        _forbid(".item() of a device array")
        return np.asarray(self).item(*args)

    def tolist(self):
        _forbid(".tolist() of a device array")
        return np.asarray(self).tolist()


def _kept(value):
    return np.asarray(value).view(DeviceArray) if isinstance(value, np.generic) else value


def on_device(model) -> None:
    """Make a model's parameters and buffers DeviceArrays (views of the same memory), so that
    what is computed from them is too."""
    for layer in model.layers:
        for d in (layer.params, layer.buffers):
            for k in d:
                d[k] = d[k].view(DeviceArray)


# --- host state: structural copies of the objects' attributes -------------------------------
def _walked(obj) -> bool:
    return type(obj).__module__.startswith(WALKED) and hasattr(obj, "__dict__")


def _copy(value, objects: dict):
    """A copy of containers (arrays and other leaves by reference); walked objects noted."""
    if isinstance(value, dict):
        return {k: _copy(v, objects) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v, objects) for v in value]
    if isinstance(value, tuple):
        return tuple(_copy(v, objects) for v in value)
    if isinstance(value, set):
        return set(value)
    if _walked(value) and id(value) not in objects:
        objects[id(value)] = (value, None)
    return value


def snapshot(roots) -> dict:
    """id -> (object, copy of its __dict__) for every walked object reachable from roots."""
    objects = {id(r): (r, None) for r in roots}
    done = {}
    while len(done) < len(objects):
        for key, (obj, _) in list(objects.items()):
            if key not in done:
                done[key] = (obj, _copy(vars(obj), objects))
    return done


def restore(state: dict) -> None:
    for obj, attrs in state.values():
        vars(obj).clear()
        vars(obj).update(_copy(attrs, {}))


def _arrays(value, out: list) -> list:
    """Every array in a structure, in a fixed walk order."""
    if isinstance(value, dict):
        for k in sorted(value, key=repr):
            _arrays(value[k], out)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _arrays(v, out)
    elif isinstance(value, np.ndarray):
        out.append(value)
    return out


def _written(before: dict, after: dict):
    """(array after the capture, array of this replay) pairs at the same places."""
    for key, (_, attrs) in before.items():
        if key in after:
            yield from zip(_arrays(attrs, []), _arrays(after[key][1], []))


class _Graph:
    def __init__(self, fn, pool, start, end, outputs):
        self.fn, self.pool = fn, weakref.ref(pool)
        self.start, self.end, self.outputs = start, end, outputs


class StandinPool:
    """A private memory pool: only its lifetime matters here."""


class StandinCapture:
    def __init__(self, roots, monkeypatch):
        """``roots()``: the objects a step touches (DataParallel, optimiser, loss, model)."""
        self.roots = roots
        self.captures = self.launches = 0
        original = {n: getattr(backend, n) for n in ("HostCopy", "to_numpy", "synchronize",
                                                     "pinned_empty")}

        def guarded(name, what):
            def call(*args, **kwargs):
                _forbid(what)
                return original[name](*args, **kwargs)
            return call

        monkeypatch.setattr(backend, "HostCopy", guarded("HostCopy", "a host copy (event record "
                                                         "read by the host)"))
        monkeypatch.setattr(backend, "to_numpy", guarded("to_numpy", "a host read (to_numpy)"))
        monkeypatch.setattr(backend, "synchronize", guarded("synchronize", "a stream synchronisation"))
        monkeypatch.setattr(backend, "pinned_empty", guarded("pinned_empty", "a host allocation"))

    def new_pool(self):
        return StandinPool()

    def capture(self, fn, pool, comms=()):
        if not isinstance(pool, StandinPool):
            raise CaptureViolation("capture without a private memory pool")
        start = snapshot(self.roots())
        memory = [(a, a.copy()) for a in _arrays([attrs for _, attrs in start.values()], [])]
        _capturing[0] = True
        try:
            outputs = fn()
        finally:
            _capturing[0] = False
            for a, saved in memory:              # a capture runs no kernel
                a[...] = saved
        self.captures += 1
        end = snapshot(self.roots())
        return _Graph(fn, pool, start, end, outputs), outputs

    def launch(self, graph) -> None:
        if graph.pool() is None:
            raise CaptureViolation("graph launched after its memory pool was released")
        now = snapshot(self.roots())
        restore(graph.start)
        try:
            outputs = graph.fn()
            replayed = snapshot(self.roots())
        finally:
            restore(now)
        for kept, new in list(_written(graph.end, replayed)) + \
                list(zip(_arrays(graph.outputs, []), _arrays(outputs, []))):
            if kept is not new and kept.shape == new.shape:
                kept[...] = new                      # the graph writes the same addresses
        self.launches += 1
