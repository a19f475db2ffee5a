"""A watchdog for collectives: one that does not complete in time ends the job.

Code arms it before an operation with a description (operation, bucket, step, bytes) and
disarms it after; a daemon thread checks the deadlines once a second (or faster for short
timeouts). On expiry it calls ``on_expire(message)``; the default prints the message and
aborts the whole MPI job with exit code 3. A blocked MPI call cannot be interrupted from
Python, so ending the job is the only way not to hang.

Time during which this process was stopped (SIGSTOP of the whole job, Slurm suspend, Ctrl-Z)
does not count: the thread ticks every period, and a tick that comes far later than the
period means the process did not run in between, so every deadline moves by the gap. A peer
frozen alone is still noticed: this process's own ticks keep coming on time.

How long an operation may take depends on its phase and on --comm-timeout (timeout_policy.py):
``auto`` bounds a training step's collectives by a multiple of the slowest step measured so
far (``step_began``/``step_ended``), every other phase by a generous limit; but while some
rank's heartbeat has been silent for longer than the step limit, every operation gets the
step limit (a dead node is found as fast during a checkpoint as during a step). On expiry the
message says the limit, how it was derived and, from the heartbeat side channel
(heartbeat.py), which ranks did not answer.
"""
from __future__ import annotations

import itertools
import threading
import time
import weakref
from contextlib import contextmanager

from . import timeout_policy
from .order_check import labelled

# a tick this much later than due means the process was stopped (or not scheduled) meanwhile
PAUSE_SLACK_S = 1.0
_live: "weakref.WeakSet[Watchdog]" = weakref.WeakSet()


def abort_job(message: str) -> None:
    from ..last_words import end_job
    end_job(f"dptrain: training failed: {message}", 3)    # the line survives the abort
    import os
    os._exit(3)                      # a single process, or MPI already gone


def any_armed() -> bool:
    """Whether some watchdog of this process bounds an operation in progress."""
    return any(w.armed() for w in list(_live))


class Watchdog:
    def __init__(self, timeout, rank: int = 0, on_expire=abort_job,
                 clock=time.monotonic, start: bool = True, flag: str = "--comm-timeout"):
        """``timeout``: seconds, ``auto``/``auto:FLOOR`` or a TimeoutPolicy."""
        self.policy = timeout_policy.parse(timeout)
        self.rank = rank
        self.on_expire = on_expire
        self.clock = clock
        self.flag = flag
        self.period = min(1.0, max(self.least_limit / 10, 0.01))
        self._armed: dict[int, tuple[float, str, float, str]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._last_tick = clock()
        self.paused_s = 0.0                 # stopped time discounted so far
        self.fired: str | None = None
        self.step, self.steps, self.slowest_step = 0, 0, None     # steps measured on this run
        self._step_began = None
        self.begun = 0                      # operations armed: the same sequence on every rank
        self.heartbeat = None
        _live.add(self)
        self._thread = threading.Thread(target=self._watch, name="dptrain-watchdog", daemon=True)
        if start:
            self._thread.start()

    @classmethod
    def for_run(cls, timeout, rank: int, size: int) -> "Watchdog | None":
        """A training run's watchdog, listening to the heartbeats (None on one rank: there
        is nobody to wait for). Collective over the world: every rank calls it alike."""
        if size == 1:
            return None
        dog = cls(timeout, rank)
        dog.listen(size)
        return dog

    @property
    def least_limit(self) -> float:
        """The shortest limit any operation may get."""
        return self.policy.fixed if self.policy.fixed is not None else self.policy.floor

    @property
    def timeout_s(self) -> float:
        """The limit of the phases the steps' times say nothing about."""
        return self.policy.generous

    def run_clock(self) -> float:
        """Seconds this process ran: the clock less the time it was seen stopped."""
        return self.clock() - self.paused_s

    def listen(self, comm_size: int) -> None:
        """Open the heartbeat side channel (a collective over the world: every rank calls it
        at the same point) so that an expiry can name the ranks that did not answer."""
        from .heartbeat import Heartbeat, period_for, world_channel
        with self.guard("the heartbeat channel's set-up", phase="setup"):
            channel, why = world_channel(comm_size)
        self.heartbeat = why if channel is None else \
            Heartbeat(channel, self.run_clock, period_for(self.least_limit))

    def step_began(self, step: int) -> None:
        self._account_pause(self.clock())
        self.step, self._step_began = step, self.run_clock()
        self._tell_heartbeat()

    def step_ended(self) -> None:
        """Count the step begun last into the slowest step (time stopped excluded)."""
        if self._step_began is None:
            return
        self._account_pause(self.clock())
        took, self._step_began = self.run_clock() - self._step_began, None
        self.steps += 1
        self.slowest_step = took if self.slowest_step is None else max(self.slowest_step, took)

    def limit(self, phase: str) -> tuple[float, str]:
        return self.policy.limit(phase, self.slowest_step, self.steps)

    def arm(self, what: str, phase: str | None = None, timeout_s: float | None = None) -> int:
        """Bound ``what``: by ``timeout_s`` when given (with ``self.flag`` as the reason), else
        by the policy's limit for ``phase``."""
        token = next(self._ids)
        if timeout_s is None:
            limit, why = self.limit(phase)
        else:
            limit, why = float(timeout_s), self.flag
        with self._lock:
            self._armed[token] = (self.clock() + limit, what, limit, why)
            self.begun += 1
        self._tell_heartbeat()
        return token

    def disarm(self, token: int) -> None:
        with self._lock:
            self._armed.pop(token, None)
        self._tell_heartbeat()

    def armed(self) -> bool:
        with self._lock:
            return bool(self._armed)

    def _tell_heartbeat(self) -> None:
        if self.heartbeat is not None and not isinstance(self.heartbeat, str):
            self.heartbeat.at(self.step, self.begun, bool(self._armed))

    @contextmanager
    def guard(self, what: str, phase: str | None = None, timeout_s: float | None = None):
        token = self.arm(what, phase, timeout_s)
        began = self.run_clock()
        try:
            yield
        finally:
            self.disarm(token)
            if phase != timeout_policy.STEP and self._step_began is not None:
                # another phase inside a step (measuring the link, planning) has its own
                # limit: its time is not the step's (nor is a pause, discounted first)
                self._account_pause(self.clock())
                self._step_began += self.run_clock() - began

    def _account_pause(self, now: float) -> None:
        """A tick (or a step's end) far later than the last tick's period: this process was
        stopped meanwhile, so every deadline moves by the gap."""
        with self._lock:
            gap = now - self._last_tick - self.period
            if gap > PAUSE_SLACK_S:            # stopped (or starved) for ``gap`` seconds
                self.paused_s += gap
                self._armed = {k: (d + gap, w, t, y) for k, (d, w, t, y) in self._armed.items()}
                self._last_tick = now

    def tick(self) -> str | None:
        """One check: discount a pause since the last tick, then return the first operation
        past its deadline (with why), or None."""
        now = self.clock()
        self._account_pause(now)
        with self._lock:
            self._last_tick = now
            late = [(what, limit, why) for deadline, what, limit, why in self._armed.values()
                    if deadline < now]
        if not late:
            late = self._waiting_for_a_silent_rank(now)
        if not late:
            return None
        what, limit, why = late[0]
        return f"rank {self.rank}: {what} did not complete within {limit:.3g} s ({why})" \
            + self._who_did_not_answer(limit)

    def _waiting_for_a_silent_rank(self, now: float) -> list:
        """Operations with a longer limit than a step's (a checkpoint, an evaluation) that have
        waited for longer than the step limit while some rank has been silent that long: a
        rank that is slow in such a phase still beats, one whose heartbeat is silent is
        stopped, dead or cut off, and waiting for it for the rest of the phase's limit would
        only delay the end of the job."""
        hb = self.heartbeat
        if hb is None or isinstance(hb, str):
            return []
        limit, why = self.limit(timeout_policy.STEP)
        with self._lock:
            waiting = [(what, phase_limit, phase_why)
                       for deadline, what, phase_limit, phase_why in self._armed.values()
                       if phase_limit > limit and now - (deadline - phase_limit) > limit]
        if not waiting:
            return []
        silence = hb.silence()
        if not silence or max(silence.values()) <= limit:
            return []
        what, phase_limit, phase_why = waiting[0]
        return [(what, limit, f"{why}: the limit of any collective while a rank is silent; "
                              f"{phase_why} otherwise")]

    def _who_did_not_answer(self, limit: float) -> str:
        """The heartbeat's verdict (nothing for a watchdog that never listened: a phase's)."""
        hb = self.heartbeat
        if hb is None:
            return ""
        if isinstance(hb, str):
            return f"; the ranks that did not answer are unknown (no heartbeat channel: {hb})"
        try:
            return "; " + hb.who_did_not_answer(limit)
        except Exception as exc:                     # never in the way of ending the job
            return f"; the ranks that did not answer are unknown ({exc})"

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            message = self.tick()
            if message:
                self.fired = message
                self.on_expire(message)
                return

    def close(self) -> None:
        self._stop.set()
        _live.discard(self)
        if self.heartbeat is not None and not isinstance(self.heartbeat, str):
            self.heartbeat.close()
        if self._thread.is_alive():
            self._thread.join(timeout=2)


@contextmanager
def guarded(watchdog, what: str, phase: str):
    """Name the collectives posted inside (for --check-collectives) and, with a watchdog,
    end the job if they do not complete within the limit of ``phase`` (timeout_policy.PHASES)."""
    with labelled(what):
        if watchdog is None:
            yield
        else:
            with watchdog.guard(what, phase):
                yield


@contextmanager
def timed_step(watchdog, step: int):
    """Measure a training step for the watchdog's step limit (one that fails is not counted)."""
    if watchdog is None:
        yield
        return
    watchdog.step_began(step)
    yield
    watchdog.step_ended()
