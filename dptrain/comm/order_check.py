"""Cross-checking that every rank posts the same collectives in the same order
(--check-collectives, DPTRAIN_CHECK_COLLECTIVES; in the spirit of PyTorch's
TORCH_DISTRIBUTED_DEBUG=DETAIL).

MPI matches the collectives of a communicator by position: if rank 0's third collective is a
3-element metrics reduction and rank 1's is a gradient bucket, MPI pairs them anyway, and
the sums come out mixed or the wait never completes. ``CheckedCommunicator`` wraps any
communicator, records on each rank the sequence it posts (operation, bytes, dtype, root and
the origin the caller named with ``labelled(...)``), and compares the ranks:

    N        a running fingerprint of each channel is cross-checked every N steps and at the
             end of training (one small collective per channel and check); cheap enough to
             leave on
    strict   every collective is compared before it is posted (one small collective each), so
             a mismatch is named before it can mix sums or hang: what the MPI tests use

A mismatch raises CollectiveOrderError (exit 3) on every rank alike, naming the channel, the
first position where the ranks differ and what each rank posted there. The checks travel on
a duplicate of each channel, so they never queue behind (or match with) the collectives
they check. A channel is a communicator (``dup()`` makes a new one, e.g. the communication
thread's); channels are created in the same order on every rank.
"""
from __future__ import annotations

import hashlib
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import TrainingFailure
from .base import Communicator, Handle

ENV = "DPTRAIN_CHECK_COLLECTIVES"

_local = threading.local()


@contextmanager
def labelled(what: str):
    """Name the origin of the collectives posted by this thread inside the block (a bucket,
    the step metrics, a gather): it appears in the records and in a mismatch's message."""
    previous = getattr(_local, "origin", None)
    _local.origin = what
    try:
        yield
    finally:
        _local.origin = previous


def current_origin() -> str | None:
    return getattr(_local, "origin", None)


def parse_mode(value) -> int | str:
    """'off'/'0'/'' -> 0, 'strict' -> 'strict', a positive integer -> check every N steps."""
    text = str(value if value is not None else "").strip().lower()
    if text in ("", "off", "0", "no", "false"):
        return 0
    if text == "strict":
        return "strict"
    try:
        n = int(text)
    except ValueError:
        n = -1
    if n <= 0:
        raise ValueError(f"{value!r}: give off, strict or a positive number of steps")
    return n


def mode_from_env() -> int | str:
    return parse_mode(os.environ.get(ENV, ""))


def resolved(flag) -> str:
    """The mode --check-collectives ``flag`` (None: the environment's) names, canonically:
    'off', 'strict' or a number of steps."""
    mode = mode_from_env() if flag is None else parse_mode(flag)
    return "off" if mode == 0 else str(mode)


class CollectiveOrderError(TrainingFailure):
    """Ranks posted different collectives at the same position of a communicator."""


@dataclass(frozen=True)
class Entry:
    op: str
    nbytes: int
    dtype: str
    root: int | None
    origin: str

    def __str__(self) -> str:
        root = f" from root {self.root}" if self.root is not None else ""
        return f"{self.op} of {self.nbytes} B {self.dtype}{root} ({self.origin})"

    def digest(self, previous: bytes) -> bytes:
        h = hashlib.blake2b(previous, digest_size=8)
        h.update(repr((self.op, self.nbytes, self.dtype, self.root, self.origin)).encode())
        return h.digest()


def _describe(arr) -> tuple[int, str]:
    if arr is None:
        return 0, "-"
    if hasattr(arr, "nbytes") and hasattr(arr, "dtype"):
        return int(arr.nbytes), str(arr.dtype)
    return 0, f"object:{type(arr).__name__}"


class _Log:
    """The entries a channel posted since its last agreed position, with a prefix
    fingerprint after each (so ranks can compare any common prefix)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.base = 0                  # entries before this position were agreed
        self.entries: list[Entry] = []
        self.chain: list[bytes] = [b"\0" * 8]    # chain[i]: fingerprint of base + i entries

    def append(self, entry: Entry) -> int:
        with self.lock:
            self.entries.append(entry)
            self.chain.append(entry.digest(self.chain[-1]))
            return self.base + len(self.entries) - 1

    def snapshot(self) -> tuple[int, list[bytes]]:
        with self.lock:
            return self.base, list(self.chain)

    def entry_at(self, position: int) -> Entry | None:
        with self.lock:
            i = position - self.base
            return self.entries[i] if 0 <= i < len(self.entries) else None

    def agreed(self, position: int) -> None:
        with self.lock:
            cut = position - self.base
            self.entries = self.entries[cut:]
            self.chain = self.chain[cut:]
            self.base = position


def _mismatch(channel: int, position: int, posted: list[tuple[int, object]]) -> CollectiveOrderError:
    groups: dict[str, list[int]] = {}
    for rank, entry in sorted(posted):
        groups.setdefault(str(entry) if entry is not None else "nothing yet", []).append(rank)
    what = "; ".join(f"rank{'s' if len(r) > 1 else ''} {','.join(map(str, r))} posted {e}"
                     for e, r in groups.items())
    return CollectiveOrderError(f"collectives differ across ranks at position {position} of "
                                f"channel {channel} (--check-collectives): {what}")


class CheckedCommunicator(Communicator):
    def __init__(self, inner: Communicator, mode, _registry: list | None = None):
        self.inner, self.mode = inner, mode
        self.strict = mode == "strict"
        self.name = inner.name
        self.rank, self.size = inner.rank, inner.size
        self.local_rank, self.local_size = inner.local_rank, inner.local_size
        self._registry = _registry if _registry is not None else []
        self.channel = len(self._registry)
        self._registry.append(self)
        self._check = inner.dup()         # the checks' own channel
        self.log = _Log()

    # --- recording ---------------------------------------------------------
    def _record(self, op: str, arr=None, root: int | None = None) -> None:
        nbytes, dtype = _describe(arr)
        entry = Entry(op, nbytes, dtype, root, current_origin() or "unlabelled")
        position = self.log.append(entry)
        if self.strict:
            # a fixed-size buffer collective (fast); the entries travel only on a mismatch
            mine = np.array([position, int.from_bytes(entry.digest(b""), "little") >> 1], dtype=np.int64)
            rows = self._check.allgather(mine)
            if not (rows == rows[0]).all():
                posted = self._check.allreduce_obj([(self.rank, entry)])
                raise _mismatch(self.channel, position, posted)

    def verify(self) -> None:
        """Cross-check every channel's fingerprint over the ranks (all ranks call this at the
        same point of the program). Only the prefix every rank has posted is compared: a
        communication thread may be a collective behind on some rank."""
        if self.strict:
            return
        for ch in self._registry:
            base, chain = ch.log.snapshot()
            views = ch._check.allreduce_obj([(ch.rank, base, chain)])
            common = min(b + len(c) - 1 for _, b, c in views)    # positions every rank has
            start = max(b for _, b, _ in views)
            first_bad = None
            for position in range(start + 1, common + 1):
                if len({bytes(c[position - b]) for _, b, c in views}) > 1:
                    first_bad = position - 1                   # the entry that made them differ
                    break
            if first_bad is None:
                ch.log.agreed(common)
                continue
            posted = ch._check.allreduce_obj([(ch.rank, ch.log.entry_at(first_bad))])
            raise _mismatch(ch.channel, first_bad, posted)

    # --- the interface -----------------------------------------------------
    def allreduce(self, buf) -> None:
        self._record("allreduce", buf)
        self.inner.allreduce(buf)

    def iallreduce(self, buf) -> Handle:
        self._record("iallreduce", buf)
        return self.inner.iallreduce(buf)

    def allgather(self, arr):
        self._record("allgather", arr)
        return self.inner.allgather(arr)

    def iallgather(self, arr, out) -> Handle:
        self._record("iallgather", arr)
        return self.inner.iallgather(arr, out)

    def bcast(self, buf, root: int = 0) -> None:
        self._record("bcast", buf, root)
        self.inner.bcast(buf, root)

    def barrier(self) -> None:
        self._record("barrier")
        self.inner.barrier()

    def allreduce_obj(self, obj):
        self._record("allreduce_obj", obj)
        return self.inner.allreduce_obj(obj)

    def bcast_obj(self, obj, root: int = 0):
        # only the root's object is meaningful: the others pass None, so record no type
        self._record("bcast_obj", None, root)
        return self.inner.bcast_obj(obj, root)

    def dup(self) -> "CheckedCommunicator":
        self._record("dup")
        return CheckedCommunicator(self.inner.dup(), self.mode, self._registry)


def checked(comm: Communicator, mode, channels: list | None = None) -> Communicator:
    """``comm`` wrapped in a checker for ``mode`` (0: unwrapped); never wrapped twice.
    Checkers given one ``channels`` list are verified together (a hierarchical reduction's
    node and cross communicators with the world's)."""
    if not mode or isinstance(comm, CheckedCommunicator):
        return comm
    return CheckedCommunicator(comm, mode, channels)


def unchecked(comm: Communicator) -> Communicator:
    return comm.inner if isinstance(comm, CheckedCommunicator) else comm
