"""A liveness side channel: which ranks did not answer when a collective ran out of time.

Every rank's heartbeat thread sends each peer, about once a second, a tiny message saying
where this rank is: its step, how many bounded operations it has begun (every rank begins the
same ones in the same order) and whether it is inside one now. It uses nonblocking MPI on a
duplicate of the world communicator, so nothing is posted on the communicators training uses
(the collective-order check and every float result are untouched), and a dead peer cannot
block it. When the watchdog gives up it asks ``who_did_not_answer()``: the peers silent for
more than SILENT_S (stopped, dead, cut off), and those alive but behind this rank (not yet at
the operation this rank waits in: a rank stuck in its own work).

A peer silent for longer than a training step's limit is taken for dead in every phase: an
operation that waits for one gets that limit, not its phase's (watchdog.py).

The watchdog only reads what this thread last recorded, under a lock no MPI call holds; if an
MPI call here fails the channel closes itself, and if one blocks the watchdog still ends the
job (it then says the channel went quiet).
"""
from __future__ import annotations

import atexit
import sys
import threading
import weakref

import numpy as np

PERIOD_S = 1.0          # at most; a short --comm-timeout beats faster (period_for)
SILENT_S = 5.0          # several beats missed: not a late thread, a rank that is not running
OWN_LATE_BEATS = 3     # this rank's own beat this late: its silence verdicts are void
MAX_IN_FLIGHT = 8       # unfinished sends to one peer before this rank stops adding to them
TAG = 23
_channel: dict = {}     # the duplicate communicator, made once per process
_live: "weakref.WeakSet[Heartbeat]" = weakref.WeakSet()


def world_channel(size: int):
    """A duplicate of MPI_COMM_WORLD for heartbeats (collective: every rank calls it at the
    same point), or None with why when there is none to have: not under MPI, a communicator
    other than the world, MPI without thread support."""
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is None or not MPI.Is_initialized() or MPI.Is_finalized():
        return None, "not running under MPI"
    if MPI.COMM_WORLD.Get_size() != size:
        return None, "training runs on a part of the MPI job"
    if MPI.Query_thread() != MPI.THREAD_MULTIPLE:
        return None, "MPI gives no thread support"
    if "comm" not in _channel:
        _channel["comm"] = MPI.COMM_WORLD.Dup()
    return _channel["comm"], None


def period_for(least_limit: float) -> float:
    """A beat at least five times within the shortest limit (--comm-timeout's floor)."""
    return min(PERIOD_S, max(least_limit / 5, 0.1))


class Heartbeat:
    def __init__(self, comm, clock, period: float = PERIOD_S, start: bool = True):
        """``comm``: an mpi4py communicator of its own; ``clock``: seconds that do not count
        time this process spent stopped (the watchdog's)."""
        self.comm, self.clock, self.period = comm, clock, period
        self._MPI = sys.modules.get("mpi4py.MPI")          # loaded when there is a channel
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._lock = threading.Lock()
        self.where = (0, 0, 0)                         # step, operations begun, inside one
        born = clock()
        self.heard = {r: (born, None) for r in range(self.size) if r != self.rank}
        self.last_beat = born
        self.broken: str | None = None
        self._sends: dict[int, list] = {r: [] for r in self.heard}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="dptrain-heartbeat", daemon=True)
        _live.add(self)
        if start:
            self._thread.start()

    def at(self, step: int, begun: int, inside: bool) -> None:
        self.where = (int(step), int(begun), int(inside))   # one tuple: read whole or not at all

    def beat(self) -> None:
        """Send where this rank is to every peer; take in what the peers sent."""
        payload = np.array(self.where, dtype=np.int64)
        for peer, sends in self._sends.items():
            sends[:] = [(req, buf) for req, buf in sends if not req.Test()]
            if len(sends) < MAX_IN_FLIGHT:           # a dead peer: do not pile sends up
                sends.append((self.comm.Isend(payload, dest=peer, tag=TAG), payload))
        got, status = np.empty(3, dtype=np.int64), self._MPI.Status()
        while True:
            message = self.comm.Improbe(source=self._MPI.ANY_SOURCE, tag=TAG, status=status)
            if message is None:
                break
            source = status.Get_source()
            message.Recv(got)
            with self._lock:
                self.heard[source] = (self.clock(), tuple(int(v) for v in got))
        with self._lock:
            self.last_beat = self.clock()

    def _run(self) -> None:
        while True:
            try:
                self.beat()
            except Exception as exc:                  # the channel is a help, never a risk
                self.broken = f"the heartbeat channel failed ({exc})"
                return
            if self._stop.wait(self.period):
                return

    def close(self) -> None:
        self._stop.set()
        _live.discard(self)
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=2)

    def silence(self) -> dict[int, float] | None:
        """Seconds since each peer was last heard from; None while this rank's own heartbeat
        is not beating (broken, or late by several periods): what it has not heard then says
        nothing about the peers."""
        now = self.clock()
        with self._lock:
            heard, last_beat = dict(self.heard), self.last_beat
        if self.broken or now - last_beat > OWN_LATE_BEATS * self.period + 1.0:
            return None
        return {peer: now - at for peer, (at, _) in heard.items()}

    def who_did_not_answer(self, limit: float) -> str:
        """The ranks that did not answer within an operation's ``limit`` seconds, and why each
        is taken for one, in one line. Silent: not heard for SILENT_S, or half the limit when
        that is shorter (a short limit), but never less than a few beats."""
        now = self.clock()
        silent_s = min(SILENT_S, max(2.5 * self.period, limit / 2))
        with self._lock:
            heard, last_beat = dict(self.heard), self.last_beat
        step, begun, _ = self.where
        silent, behind, ahead = [], [], []
        for peer, (at, said) in sorted(heard.items()):
            if said is not None and said[1] > begun:
                ahead.append(str(peer))
            if now - at > silent_s:
                last = "never heard" if said is None else f"last at step {said[0]}"
                silent.append(f"{peer} (no heartbeat for {now - at:.0f} s, {last})")
            elif said is not None and said[1] < begun:       # it never began this operation
                inside = "waiting in an earlier collective" if said[2] else "outside any collective"
                behind.append(f"{peer} (alive, but at step {said[0]} operation {said[1]}, {inside}; "
                              f"this rank at step {step} operation {begun})")
        if self.broken:
            tail = f"; {self.broken}"
        elif now - last_beat > silent_s:
            tail = f"; this rank's heartbeat has been stuck for {now - last_beat:.0f} s"
        else:
            tail = ""
        if silent or behind:
            return "ranks that did not answer: " + ", ".join(silent + behind) + tail
        if ahead:
            return (f"this rank is the one behind: rank{'s' * (len(ahead) > 1)} "
                    f"{', '.join(ahead)} began later operations (this rank at step {step} "
                    f"operation {begun}: its own work is stuck or slow)" + tail)
        return ("every rank answers the heartbeat and has reached this operation (a stuck "
                "network or MPI?)" + tail)


def stop_all() -> None:
    """Before MPI_Finalize (and at exit): no heartbeat may call MPI after it."""
    for hb in list(_live):
        hb.close()


atexit.register(stop_all)                 # runs before mpi4py's own finalize (registered earlier)

