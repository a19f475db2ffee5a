"""How long a collective may take before the job is ended: ``--comm-timeout auto|auto:FLOOR|S``.

A fixed number S bounds every collective by S seconds, whatever the phase. ``auto`` (the
default) bounds the collectives of a training step by ``max(FLOOR, 20 x the slowest step
measured so far on this run)``, FLOOR 30 s unless ``auto:FLOOR`` says otherwise; until
WARMUP_STEPS steps have been measured, and in every other phase (start-up, the initial
broadcast, link measurement and planning, evaluation, checkpoints, checks, the end of the
run), the generous limit: GENEROUS_S, or FLOOR when that is larger.

Each rank computes its own limit from its own steps: it only decides when this rank gives up.
The ranks' steps are alike (they wait for one another every step), and no limit is ever below
the floor, so a difference between ranks does not matter.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import UsageError

FLAG = "--comm-timeout"
GENEROUS_S = 300.0          # the phases a step's time says nothing about, and the first steps
DEFAULT_FLOOR_S = 30.0
STEP_FACTOR = 20.0          # a step's collective may take this many times the slowest step
WARMUP_STEPS = 3            # steps measured before the step limit applies
MIN_S, MAX_S = 1.0, 1e7     # a deadline past MAX_S overflowed arithmetic; below 1 s is noise

STEP = "step"
# every phase a guard may name, with what the messages call it
PHASES = {
    STEP: "a training step",
    "setup": "start-up and the initial broadcast",
    "plan": "link measurement and planning",
    "eval": "evaluation",
    "checkpoint": "checkpoint writing",
    "check": "consistency checks",
    "end": "the end of the run",
}


@dataclass(frozen=True)
class TimeoutPolicy:
    fixed: float | None = None         # --comm-timeout S
    floor: float = DEFAULT_FLOOR_S     # auto: the least any collective gets

    @property
    def generous(self) -> float:
        """The limit of every phase but the steps (and of the first steps)."""
        return self.fixed if self.fixed is not None else max(GENEROUS_S, self.floor)

    def limit(self, phase: str, slowest_step: float | None, steps: int) -> tuple[float, str]:
        """The limit of an operation of ``phase`` after ``steps`` measured steps, the slowest
        ``slowest_step`` seconds; and how it was derived, for the message on expiry."""
        if phase not in PHASES:
            raise ValueError(f"unknown watchdog phase {phase!r} (choose {', '.join(PHASES)})")
        if self.fixed is not None:
            return self.fixed, f"{FLAG} {self.fixed:g}"
        if phase != STEP:
            return self.generous, f"{FLAG} auto: {self.generous:g} s for {PHASES[phase]}"
        if steps < WARMUP_STEPS or slowest_step is None:
            return self.generous, (f"{FLAG} auto: {self.generous:g} s until {WARMUP_STEPS} steps "
                                   f"are measured ({steps} so far)")
        scaled = STEP_FACTOR * slowest_step
        return (max(self.floor, scaled),
                f"{FLAG} auto: {STEP_FACTOR:g} x slowest step {slowest_step:.3g} s = {scaled:.3g} s, "
                f"floor {self.floor:g} s")

    def describe(self) -> str:
        if self.fixed is not None:
            return f"{self.fixed:g}"
        return "auto" if self.floor == DEFAULT_FLOOR_S else f"auto:{self.floor:g}"


def _seconds(text, what: str, value) -> float:
    try:
        s = float(text)
    except (TypeError, ValueError):
        s = None
    if s is None or isinstance(text, bool) or not MIN_S <= s <= MAX_S:   # NaN fails too
        raise UsageError(f"{FLAG}: expected auto, auto:FLOOR or a number of seconds, with "
                         f"{what} in [{MIN_S:g}, {MAX_S:g}], got {value!r}")
    return s


def parse(value) -> TimeoutPolicy:
    """``auto``, ``auto:FLOOR``, seconds (a number or its text) or a TimeoutPolicy; anything
    else is a UsageError naming the flag."""
    if isinstance(value, TimeoutPolicy):
        return value
    if value is None:
        return TimeoutPolicy()
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "auto":
            return TimeoutPolicy()
        if text.startswith("auto:"):
            return TimeoutPolicy(floor=_seconds(text[5:], "FLOOR", value))
    return TimeoutPolicy(fixed=_seconds(value, "seconds", value))


def cli_value(text: str):
    """The flag's argparse type: the text is kept (checked by TrainConfig.validate, on every
    rank alike), a plain number becomes a float as it always was."""
    try:
        return float(text)
    except ValueError:
        return text
