"""Network emulation: real collectives, held until an alpha-beta model says they would end.

``comm.create("emulated", inner=..., bw="10Gbit", lat="20us")`` wraps a real communicator.
Every operation runs for real (results stay exact), then its completion is held until
the time the model gives for that operation on P ranks has passed since it started,
sleeping rather than spinning so the core stays free for computation. Overlap then hides
real wall-clock time on a single machine.

Model (ring algorithms, n = bytes of the buffer, alpha = latency, beta = 1 / bandwidth):
    allreduce   2 (P-1) alpha + 2 (P-1)/P n beta
    allgather   (P-1) alpha + (P-1)/P n_total beta     (n_total = the gathered result)
    bcast       (P-1) alpha + (P-1)/P n beta           (scatter + allgather style)
    barrier     2 (P-1) alpha
"""
from __future__ import annotations

import re
import time

from .base import Communicator, Handle

_UNITS = {"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
          "b": 8, "kb": 8e3, "mb": 8e6, "gb": 8e9}
_TIMES = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


# What an emulated link may be: beyond these the model's times overflow a sleep or a deadline
# (lat=1e300s), or no step would ever end (bw=1bit); the message gives the range.
BANDWIDTH_BPS = (1e3, 1e15)        # 1 kbit/s .. 1 Pbit/s
LATENCY_S = (0.0, 10.0)


def parse_spec(spec: str) -> dict:
    """'bw=10Gbit,lat=20us' -> {'bandwidth_bps': 1e10, 'latency_s': 2e-5} (bits per second)."""
    out = {"bandwidth_bps": None, "latency_s": 0.0}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        key, _, value = part.partition("=")
        m = re.fullmatch(r"((?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?)\s*([a-zA-Z]*)",
                         value.strip())
        if not m:
            raise ValueError(f"--net-emulate: cannot read {part!r}")
        number, unit = float(m.group(1)), m.group(2).lower().removesuffix("/s").removesuffix("ps")
        if key == "bw":
            if unit not in _UNITS:
                raise ValueError(f"--net-emulate: unknown bandwidth unit in {part!r} (e.g. 10Gbit)")
            out["bandwidth_bps"] = number * _UNITS[unit]
            lo, hi = BANDWIDTH_BPS
            if not lo <= out["bandwidth_bps"] <= hi:
                raise ValueError(f"--net-emulate: bandwidth {part!r} out of range "
                                 "(1kbit .. 1000Tbit per second)")
        elif key == "lat":
            if unit not in _TIMES:
                raise ValueError(f"--net-emulate: unknown latency unit in {part!r} (e.g. 20us)")
            out["latency_s"] = number * _TIMES[unit]
            if not LATENCY_S[0] <= out["latency_s"] <= LATENCY_S[1]:
                raise ValueError(f"--net-emulate: latency {part!r} out of range (0 .. 10s)")
        else:
            raise ValueError(f"--net-emulate: unknown key {key!r} (use bw= and lat=)")
    if not out["bandwidth_bps"] or out["bandwidth_bps"] <= 0:
        raise ValueError("--net-emulate: give a positive bandwidth, e.g. bw=10Gbit")
    return out


class AlphaBeta:
    """Times of collectives on P ranks for latency alpha (s) and bandwidth (bits/s)."""

    def __init__(self, latency_s: float, bandwidth_bps: float):
        self.alpha = float(latency_s)
        self.beta = 8.0 / float(bandwidth_bps)          # seconds per byte

    def allreduce(self, p: int, nbytes: int) -> float:
        return 0.0 if p <= 1 else 2 * (p - 1) * self.alpha + 2 * (p - 1) / p * nbytes * self.beta

    def allgather(self, p: int, total_bytes: int) -> float:
        return 0.0 if p <= 1 else (p - 1) * self.alpha + (p - 1) / p * total_bytes * self.beta

    def bcast(self, p: int, nbytes: int) -> float:
        return self.allgather(p, nbytes)

    def barrier(self, p: int) -> float:
        return 0.0 if p <= 1 else 2 * (p - 1) * self.alpha


class Link:
    """The one network link of a rank: operations that overlap in time queue on it, so two
    concurrent reductions take as long as two consecutive ones (shared by dup()'ed
    communicators, which use the same wire)."""

    def __init__(self):
        import threading
        self.free_at = 0.0
        self._lock = threading.Lock()

    def reserve(self, start: float, cost: float) -> float:
        """The completion time of an operation of ``cost`` seconds started at ``start``."""
        with self._lock:
            begin = max(start, self.free_at)
            self.free_at = begin + cost
            return self.free_at


class _Held(Handle):
    def __init__(self, inner: Handle, release_at: float, comm):
        self._inner, self._release_at, self._comm = inner, release_at, comm

    def test(self) -> bool:
        return self._inner.test() and self._comm.clock() >= self._release_at

    def wait(self) -> None:
        self._inner.wait()
        self._comm.hold_until(self._release_at)


class EmulatedCommunicator(Communicator):
    name = "emulated"

    def __init__(self, inner: Communicator, model: AlphaBeta, clock=time.perf_counter,
                 sleep=time.sleep, link: Link | None = None):
        self.inner, self.model = inner, model
        self.link = link or Link()
        self.clock, self.sleep = clock, sleep
        self.rank, self.size = inner.rank, inner.size
        self.local_rank, self.local_size = inner.local_rank, inner.local_size

    def hold_until(self, t: float) -> None:
        remaining = t - self.clock()
        if remaining > 0:
            self.sleep(remaining)

    def _timed(self, cost: float, op, *args):
        release = self.link.reserve(self.clock(), cost)
        result = op(*args)
        self.hold_until(release)
        return result

    def allreduce(self, buf) -> None:
        self._timed(self.model.allreduce(self.size, buf.nbytes), self.inner.allreduce, buf)

    def iallreduce(self, buf) -> Handle:
        release = self.link.reserve(self.clock(), self.model.allreduce(self.size, buf.nbytes))
        return _Held(self.inner.iallreduce(buf), release, self)

    def allgather(self, arr):
        return self._timed(self.model.allgather(self.size, arr.nbytes * self.size),
                           self.inner.allgather, arr)

    def iallgather(self, arr, out) -> Handle:
        release = self.link.reserve(self.clock(), self.model.allgather(self.size, out.nbytes))
        return _Held(self.inner.iallgather(arr, out), release, self)

    def bcast(self, buf, root: int = 0) -> None:
        self._timed(self.model.bcast(self.size, buf.nbytes), self.inner.bcast, buf, root)

    def barrier(self) -> None:
        self._timed(self.model.barrier(self.size), self.inner.barrier)

    def allreduce_obj(self, obj):
        return self.inner.allreduce_obj(obj)

    def bcast_obj(self, obj, root: int = 0):
        return self.inner.bcast_obj(obj, root)

    def dup(self) -> "EmulatedCommunicator":
        return EmulatedCommunicator(self.inner.dup(), self.model, self.clock, self.sleep, self.link)

from .registry import Transport, default, register  # noqa: E402


def _build(**kwargs) -> EmulatedCommunicator:
    spec = parse_spec(kwargs.pop("spec")) if "spec" in kwargs else {
        "bandwidth_bps": kwargs.pop("bandwidth_bps"), "latency_s": kwargs.pop("latency_s", 0.0)}
    inner = kwargs.pop("inner", None) or default()
    return EmulatedCommunicator(inner, AlphaBeta(spec["latency_s"], spec["bandwidth_bps"]), **kwargs)


register(Transport("emulated", ("cpu", "gpu"), "a real communicator held to an alpha-beta network model",
                   build=_build))
