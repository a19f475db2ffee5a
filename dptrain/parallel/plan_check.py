"""After the fact: does the automatic plan beat blocking on this machine? (``--sync auto`` with
``--bucket-mb auto`` only; an explicit --sync or --bucket-mb is taken as asked.)

The planner predicts; a loaded machine may disagree (overlap once ran 148 ms a step where
blocking ran 108). So once per process, after a plan that overlaps has run CHECK_AFTER steps,
every rank times WINDOW steps under the plan, then WINDOW steps of blocking with the same
buckets (the first step of each window is a transition and not timed). At that fixed step all
ranks all-gather their median step times; the slowest rank's decide, identically on every
rank (the same numbers in, the same comparison): when the plan is more than TOLERANCE slower
than blocking, blocking with the plan's buckets becomes the plan in force (and is what a
checkpoint saves); otherwise the plan comes back.

Results do not depend on the check: blocking and overlap sum every element in the same order
(bucket boundaries and schedules other than overlap-fc never change the bits,
parallel/autotune.py), and overlap-fc plans, which round differently, are not checked.

Test hook: ``DPTRAIN_TEST_SLOW_SCHEDULE=overlap:0.05`` adds 50 ms to every step run under that
schedule (tests only), so a test can make either side lose.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import planner, schedules

CHECK_AFTER = 6            # steps of the plan before its timed window
WINDOW = 6                 # steps per window, the first one untimed
TOLERANCE = 0.05           # the plan may be this much slower than blocking before it is dropped
SLOW_ENV = "DPTRAIN_TEST_SLOW_SCHEDULE"


def test_delay(schedule: str) -> None:
    """The test hook (module docstring): sleep where the named schedule runs."""
    spec = os.environ.get(SLOW_ENV, "")
    name, _, seconds = spec.partition(":")
    if name and name == schedule:
        time.sleep(float(seconds))


def applies(plan: planner.Plan, schedules_asked, bucket_mb) -> bool:
    kind = schedules.get(plan.schedule)
    return (len(schedules_asked) > 1 and bucket_mb is None and "blocking" in schedules_asked
            and kind.overlaps and not kind.replicates_fc)


class PlanCheck:
    """The windows and the decision; the tuner adopts what ``before_step`` hands back."""

    def __init__(self, dp, clock=time.perf_counter):
        self.dp, self.clock = dp, clock
        self.k = 0                                  # steps started since the plan
        self.stamps = {"plan": [], "blocking": []}
        self.outcome: dict | None = None

    @property
    def busy(self) -> bool:
        return self.outcome is None

    @property
    def in_windows(self) -> bool:
        """From the step before the timed windows to the decision: the plan must hold still."""
        return self.busy and self.k >= CHECK_AFTER

    def before_step(self, plan: planner.Plan) -> planner.Plan | None:
        """The plan to run from this step on, when it changes (the trial, the plan back, or
        the fallback); None otherwise. Every rank calls this at every step boundary."""
        k, self.k = self.k, self.k + 1
        now, a, w = self.clock(), CHECK_AFTER, WINDOW
        if a < k <= a + w:
            self.stamps["plan"].append(now)
        elif a + w < k <= a + 2 * w:
            self.stamps["blocking"].append(now)
        if k == a + w:
            return planner.Plan("blocking", plan.groups, plan.predicted, plan.reduction)
        if k == a + 2 * w:
            return self._decide(plan)
        return None

    def _decide(self, plan: planner.Plan) -> planner.Plan:
        mine = np.array([np.median(np.diff(self.stamps[s])) for s in ("plan", "blocking")])
        with self.dp.guard(f"allgather of the plan check's step times at step {self.dp.step}",
                           "plan"):
            every = np.asarray(self.dp.comm.allgather(mine))
        plan_s, blocking_s = (float(x) for x in every.max(axis=0))
        lost = plan_s > (1 + TOLERANCE) * blocking_s
        self.outcome = {"schedule": plan.schedule, "plan_ms": plan_s * 1e3,
                        "blocking_ms": blocking_s * 1e3, "fell_back": bool(lost),
                        "steps": WINDOW - 1}
        if lost:
            return planner.Plan("blocking", plan.groups, plan.predicted, plan.reduction)
        return plan


def describe(outcome: dict) -> str:
    verdict = ("falls back to --sync blocking (same buckets)" if outcome["fell_back"]
               else f"keeps --sync {outcome['schedule']}")
    return (f"communication plan check: {outcome['schedule']} {outcome['plan_ms']:.1f} ms vs "
            f"blocking {outcome['blocking_ms']:.1f} ms per step (slowest rank, median of "
            f"{outcome['steps']} steps each): {verdict}")
