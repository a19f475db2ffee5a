"""Fault injection for the reliability tests: DPTRAIN_FAULT="KIND:RANK:STEP".

KIND is ``raise`` (an exception on that rank before that step), ``usage`` (a bad-input
error that rank alone finds during training), ``stall`` (that rank
sleeps there, so the others wait in a collective until the watchdog fires), ``slow`` (that
rank sleeps SLOW_S there once, a slow step but a live rank), ``stop`` (that rank freezes
there, SIGSTOP, as a hung node would) or ``perturb`` (that rank's replica silently drifts, for
--check-replicas). Unset in normal use; the trainer reads it once at start-up.

``stop:RANK:PHASE`` freezes that rank at a phase outside the training loop: ``start`` (before
MPI starts), ``setup`` (after MPI started, before the start-up agreement), ``checkpoint`` (at
every checkpoint, before the agreement that follows rank 0's write), ``end`` (after the last
step, before the final barrier) or ``exit`` (``dptrain train`` only: after the final barrier,
its work complete, before the process ends). ``pause:RANK:PHASE[:SECONDS]`` keeps that rank there, live,
SECONDS or PAUSE_S (a slow file system, say): a test can then signal a job that is certainly
still in that phase, or show that a slow rank there is waited for.
"""
from __future__ import annotations

import os
import time

KINDS = ("raise", "usage", "stall", "slow", "stop", "perturb")
SLOW_S = 2.0
PAUSE_S = 60.0
PHASES = ("start", "setup", "checkpoint", "end", "exit")


class InjectedFault(RuntimeError):
    pass


def from_env() -> tuple | None:
    spec = os.environ.get("DPTRAIN_FAULT")
    if not spec:
        return None
    kind, rank, step, *_ = spec.split(":")
    if kind in ("stop", "pause") and step in PHASES:
        return None                    # at_phase's, not the training loop's
    if kind not in KINDS:
        raise ValueError(f"DPTRAIN_FAULT: unknown kind {kind!r}")
    return kind, int(rank), int(step)


def maybe_inject(fault, rank: int, step: int, model=None) -> None:
    if fault is None or fault[1] != rank or fault[2] != step:
        return
    if fault[0] == "raise":
        raise InjectedFault(f"injected failure on rank {rank} at step {step}")
    if fault[0] == "usage":
        from ..errors import UsageError
        raise UsageError(f"injected bad input on rank {rank} at step {step}")
    if fault[0] == "perturb":
        _, first = next(model.named_params())
        first.reshape(-1)[0] += 1e-3
        return
    if fault[0] == "stop":
        import signal
        os.kill(os.getpid(), signal.SIGSTOP)
        return
    time.sleep(SLOW_S if fault[0] == "slow" else 3600)


def at_phase(phase: str, rank: int) -> None:
    """Freeze this rank here if DPTRAIN_FAULT says ``stop:RANK:PHASE``, or keep it here
    SECONDS (PAUSE_S without) if it says ``pause:RANK:PHASE[:SECONDS]``."""
    kind, _, rest = os.environ.get("DPTRAIN_FAULT", "").partition(":")
    if phase not in PHASES or kind not in ("stop", "pause") \
            or not (rest + ":").startswith(f"{rank}:{phase}:"):
        return
    if kind == "stop":
        import signal
        os.kill(os.getpid(), signal.SIGSTOP)
    else:
        seconds = rest[len(f"{rank}:{phase}:"):]
        seconds = float(seconds) if seconds else PAUSE_S
        # said, so that a test knows the rank is there
        from ..last_words import write_line
        write_line(f"dptrain: DPTRAIN_FAULT: rank {rank} paused at {phase} for {seconds:g} s")
        time.sleep(seconds)
