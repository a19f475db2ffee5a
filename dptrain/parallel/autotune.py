"""``--sync auto`` and ``--bucket-mb auto``: measure, plan on rank 0, broadcast, re-plan on drift.

At start-up the link is measured (comm/link_probe.py). Before the first training step, that
step is rehearsed WARMUP_STEPS times with one bucket per layer (or the fixed cap) under the
requested schedule (overlap when it is auto), and every rank times each layer's forward,
backward and update (the first rehearsal is cold and not counted); the rehearsals are then
undone, so every training step runs under the plan and the parameters never depend on it
(overlap-fc rounds differently from the others: a warm-up of real steps under overlap
followed by overlap-fc would make a resumed run's result depend on where its warm-up fell). Then the ranks all-gather their median times, rank 0 takes the slowest
rank's time per layer, plans (parallel/planner.py) and broadcasts the plan, and every rank
rebuilds its buckets (and schedule) from the broadcast plan: the collectives every rank posts
depend only on what rank 0 sent, never on a rank's own clock.

Re-planning (planned buckets only): every REPLAN_EVERY steps after a plan, REPLAN_WINDOW steps are timed again and
rank 0 replans the buckets for the schedule in force; it adopts the new cut when the current
one is predicted slower by more than DRIFT of the step (a broadcast every time, of the new
cut or of nothing). The schedule itself is chosen once: overlap-fc rounds differently from
the others (its dW is one product over the global batch), so switching it mid-run would make
a run's result depend on when its timings drifted. Bucket boundaries never change results:
a reduction sums each element over the ranks, whatever buffer it travels in.

The plan is saved in checkpoints; a resumed run adopts it and skips the warm-up.
"""
from __future__ import annotations

import copy

import numpy as np

from ..backend import is_device_array
from ..comm.emulated import AlphaBeta
from ..comm import hierarchical, link_probe
from ..comm.reduction_choice import PlannedLink
from ..nn import Dense
from . import engine, plan_check, plan_margin, planner, schedules
from .layer_clock import LayerClock
from .predict import LayerTimes

WARMUP_STEPS = 5           # rehearsals before the plan; the first one is not timed
REPORT_AFTER = 5           # steps of the plan whose exposed time is reported
REPLAN_EVERY = 200         # steps between re-timings
REPLAN_WINDOW = 4          # steps timed for a re-plan
DRIFT = 0.02               # adopt a new cut when the current one is predicted this much slower


def layer_table(dp, medians) -> LayerTimes:
    """Times (3 x layers: forward, backward, update) with what the planner needs of ``dp``'s
    model: gradient bytes on the wire per layer, Dense shapes, the per-rank batch."""
    wire = 2 if dp.grad_dtype == "float16" else None
    nbytes = [sum(int(g.size) * (wire or g.dtype.itemsize) for g in layer.grads.values())
              for layer in dp.model.layers]
    shapes = {i: (layer.n_in, layer.n_out) for i, layer in enumerate(dp.model.layers)
              if isinstance(layer, Dense)}
    fwd, bwd, upd = (list(map(float, row)) for row in medians)
    return LayerTimes(fwd, bwd, upd, nbytes, shapes, -(-(dp.global_batch or dp.comm.size) // dp.comm.size))


def fits(dp, plan: planner.Plan) -> bool:
    """A known schedule, and buckets that cut the layers it reduces into contiguous runs in
    reverse order (a checkpoint's plan may come from another model)."""
    if plan.schedule not in schedules.names():
        return False
    fc = set(dp.fc_candidates()) if schedules.get(plan.schedule).replicates_fc else set()
    layers = [i for i in range(len(dp.model.layers) - 1, -1, -1)
              if dp.model.layers[i].params and i not in fc]
    return planner.is_valid_cut(plan.groups, layers)


def measure_links(dp, link: AlphaBeta | None = None) -> AlphaBeta:
    """The flat link (measured unless given) and, where ranks share nodes, the hierarchical
    reduction's (comm/hierarchical.py): the planner then prices each bucket at the cost of
    the reduction its size will get. Every rank calls this at once."""
    from ..backend import get_array_module
    xp = get_array_module(dp.buckets[0].buffer) if dp.buckets else np
    with dp.guard("link measurement (allreduce timings)", "plan"):
        if link is None:
            link = link_probe.measure_link(dp.comm, xp)
        choice = hierarchical.measure(dp.comm, link, xp)
    return PlannedLink(link, choice) if choice is not None and choice.hier else link


class AutoTuner:
    @classmethod
    def start(cls, dp, link: AlphaBeta | None, schedules, bucket_mb, plan: dict | None = None):
        """Measure the link (unless given) and begin; every rank calls this at once."""
        return cls(dp, measure_links(dp, link), schedules, bucket_mb, plan)

    def __init__(self, dp, link: AlphaBeta, schedules, bucket_mb, plan: dict | None = None):
        """``schedules``: the schedules to choose from (one when --sync is fixed);
        ``bucket_mb``: the fixed cap, or None to plan the buckets."""
        self.dp, self.link = dp, link
        self.schedules, self.bucket_mb = tuple(schedules), bucket_mb
        self.k = 0                          # steps started in this process
        self.plan: planner.Plan | None = None
        self.planned_at = 0
        self.replans = 0
        self.clock: LayerClock | None = None
        self._stats_at_plan = (0.0, 0)
        self.measured_exposed_s: float | None = None
        self.report: dict | None = None     # what the trainer prints once, then None
        self.compute_spread, self.margin = 0.0, None   # the warm-up's noise, the margin it set
        self.check: plan_check.PlanCheck | None = None  # the plan against blocking, once
        if plan is not None:
            self._adopt(planner.Plan.from_dict(plan), resumed=True)

    # --- the step hook (DataParallel.train_step, at a step boundary) ----------------
    def rehearse(self, run_step) -> None:
        """The warm-up: time WARMUP_STEPS runs of the step at hand (``run_step``, one whole
        step under the warm-up schedule), undo everything they changed (parameters, buffers,
        optimiser state, counters), then plan. Training steps all run under the plan, so the
        parameters never depend on when a run (or a resumed one) warmed up, nor on which
        schedule it then chose for its steps after the warm-up."""
        dp = self.dp
        saved = (dp.model.state_dict(), dp.optimizer.state_dict(), dp.step, copy.copy(dp.stats))
        for k in range(WARMUP_STEPS):
            self._time_step(record=k > 0)
            self.clock.passes_on = False
            run_step()
        self._stop_clock()
        dp.flush()                                  # complete what is in flight, then undo it
        params, opt_state, dp.step, dp.stats = saved
        dp.model.load_state_dict(params)
        dp.optimizer.load_state_dict(opt_state)
        dp.watch.clear()
        self._make_plan()

    def before_step(self) -> None:
        k, self.k = self.k, self.k + 1
        since = k - self.planned_at
        if since == REPORT_AFTER and self.measured_exposed_s is None:
            stats, (exposed0, steps0) = self.dp.stats, self._stats_at_plan
            if stats.steps - steps0 == REPORT_AFTER:
                self.measured_exposed_s = (stats.exposed_s - exposed0) / REPORT_AFTER
            else:                               # the statistics were reset (a benchmark)
                self.measured_exposed_s = stats.exposed_s / max(stats.steps, 1)
            self.report = self.summary()
        if self.check is not None and self.check.busy:
            self._checked(self.check.before_step(self.plan))
        timing_plan = self.check is not None and self.check.in_windows   # no re-plan then
        if self.bucket_mb is None and since >= REPLAN_EVERY and not timing_plan:
            self._replan_phase(since)                       # (a fixed cap: none at all)
        plan_check.test_delay(self.dp.schedule)

    def _checked(self, plan: planner.Plan | None) -> None:
        if plan is None:
            return
        # the trial, the plan back (with its engine and chunk), or the fallback
        self.dp.reconfigure(plan.schedule, plan.groups, plan.progress, plan.chunk_bytes)
        if self.check.outcome is not None:
            self.plan, self.report = plan, {"check": self.check.outcome}

    def _replan_phase(self, since: int) -> None:
        phase = since % REPLAN_EVERY
        if phase < REPLAN_WINDOW:
            self._time_step(record=True)
        elif phase == REPLAN_WINDOW:
            self._stop_clock()
            self._replan()

    # --- timing ---------------------------------------------------------------------
    def _time_step(self, record: bool) -> None:
        dp = self.dp
        if self.clock is None:
            inner = dp.model.tracer
            self.clock = LayerClock(len(dp.model.layers), inner)
            self._cold = not record
        elif self._cold and record:          # drop the cold step's samples
            self.clock = LayerClock(len(dp.model.layers), self.clock.inner)
            self._cold = False
        dp.model.tracer = dp.tracer = self.clock

    def _stop_clock(self) -> None:
        if self.clock is not None:
            self.dp.model.tracer = self.dp.tracer = self.clock.inner

    def _agreed_times(self) -> LayerTimes:
        """Every rank's medians, all-gathered; the slowest rank's per layer (same on all), and
        the largest rank's spread of the step (a fourth row, for the planner's margin)."""
        dp = self.dp
        mine = self.clock.medians()
        mine = np.vstack([mine, np.full((1, mine.shape[1]), plan_margin.step_spread(self.clock.times))])
        self.clock = None
        with dp.guard(f"allgather of layer times at step {dp.step}", "plan"):
            every = np.asarray(dp.comm.allgather(mine))
        self.compute_spread = float(every[:, 3].max())
        return layer_table(dp, every[:, :3].max(axis=0))

    # --- planning (rank 0) and agreement (everyone) ---------------------------------
    @property
    def _itemsize(self) -> int:
        return int(np.dtype(self.dp.model.dtype).itemsize)

    def _fc_layers(self, times: LayerTimes) -> list[int]:
        return self.dp.fc_candidates()

    def _make_plan(self) -> None:
        times = self._agreed_times()
        proposal = None
        if self.dp.comm.rank == 0:
            proposal, self.margin = plan_margin.choose(
                times, self.dp.comm.size, self.link, self.schedules, self._fc_layers(times),
                self.dp.global_batch, self._itemsize,
                None if self.bucket_mb is None else int(self.bucket_mb * 2**20), self.compute_spread,
                progress=self._engines())
            proposal.reduction = self._reduction_lines()
            proposal = proposal.as_dict()
        with self.dp.guard(f"broadcast of the communication plan at step {self.dp.step}",
                           "plan"):
            proposal = self.dp.comm.bcast_obj(proposal, root=0)
        self._adopt(planner.Plan.from_dict(proposal))

    def _replan(self) -> None:
        times = self._agreed_times()
        groups = None
        if self.dp.comm.rank == 0:
            s = self.plan.schedule
            chunk = self.plan.chunk_bytes
            fresh = planner.choose(times, self.dp.comm.size, self.link, (s,), self._fc_layers(times),
                                   self.dp.global_batch, self._itemsize,
                                   progress=(self.plan.progress,), chunks=chunk and (chunk,))
            now = schedules.get(s).simulate(
                times, self.dp.comm.size, self.link, fc_layers=self._fc_layers(times),
                global_batch=self.dp.global_batch, itemsize=self._itemsize, groups=self.plan.groups,
                chunk_bytes=chunk)
            if now["step_s"] - fresh.predicted[s]["step_s"] > DRIFT * now["step_s"] \
                    and fresh.groups != self.plan.groups:
                groups = fresh.groups
        with self.dp.guard(f"broadcast of the re-planned buckets at step {self.dp.step}",
                           "plan"):
            groups = self.dp.comm.bcast_obj(groups, root=0)
        if groups is not None:
            self.replans += 1
            self._adopt(planner.Plan(self.plan.schedule, groups, self.plan.predicted,
                                     self.plan.reduction, self.plan.progress, self.plan.chunk_bytes))
        self.planned_at = self.k - 1                # the next period counts from here

    def _engines(self) -> tuple:
        on_device = bool(self.dp.buckets) and is_device_array(self.dp.buckets[0].buffer)
        return engine.plan_choices(self.dp._requested_progress, on_device)

    def _reduction_lines(self) -> list[float] | None:
        if not isinstance(self.link, PlannedLink) or self.link.choice.mode != "auto":
            return None
        c = self.link.choice
        return [c.flat.alpha, 8.0 / c.flat.beta, c.hier.alpha, 8.0 / c.hier.beta]

    def _adopt(self, plan: planner.Plan, resumed: bool = False) -> None:
        if resumed and plan.schedule not in self.schedules:
            return                          # --sync changed since the checkpoint: plan anew
        if plan.reduction is not None and self._reduction_lines() is not None:
            c = self.link.choice            # the reductions the plan was made with
            c.flat, c.hier = AlphaBeta(*plan.reduction[:2]), AlphaBeta(*plan.reduction[2:])
        if plan.progress is not None and plan.progress not in self._engines() and resumed:
            return                          # --comm-progress changed since the checkpoint
        if self.bucket_mb is not None:      # a fixed cap: its buckets, whatever was saved
            plan = planner.Plan(plan.schedule, None, plan.predicted, None, plan.progress,
                                plan.chunk_bytes)
        elif not fits(self.dp, plan):
            if resumed:
                return                      # a stale checkpoint's plan: warm up and plan again
            raise RuntimeError(f"invalid communication plan {plan.as_dict()}")
        self.dp.reconfigure(plan.schedule, plan.groups, plan.progress, plan.chunk_bytes)
        if plan.groups is None:
            plan.groups = [b.layers for b in self.dp.buckets]
        self.plan = plan
        if self.check is None and plan_check.applies(plan, self.schedules, self.bucket_mb):
            self.check = plan_check.PlanCheck(self.dp)
        self.planned_at = max(self.k - 1, 0) if not resumed else 0
        self._stats_at_plan = (self.dp.stats.exposed_s, self.dp.stats.steps)

    # --- reporting ------------------------------------------------------------------
    def summary(self) -> dict:
        """For the metrics: the link, the plan, predicted and measured exposed time."""
        out = {"link_alpha_s": self.link.alpha, "link_bandwidth_bps": 8.0 / self.link.beta}
        if isinstance(self.link, PlannedLink):
            out["reduction"] = self.link.choice.describe()
        probed = getattr(self.link, "flat", self.link)
        out.update(link_spread=getattr(probed, "spread", 0.0), link_note=getattr(probed, "note", ""),
                   compute_spread=self.compute_spread, margin=self.margin)
        if self.plan is not None:
            p = self.plan
            out.update({"sync": p.schedule, "buckets": p.groups, "replans": self.replans,
                        "progress": self.dp.progress, "chunk_bytes": p.chunk_bytes,
                        "predicted_exposed_ms": p.predicted.get(p.schedule, {}).get("exposed_s", float("nan")) * 1e3,
                        "predicted_step_ms": {s: r["step_s"] * 1e3 for s, r in p.predicted.items()}})
            if self.measured_exposed_s is not None:
                out["measured_exposed_ms"] = self.measured_exposed_s * 1e3
            if self.check is not None and self.check.outcome is not None:
                out["check"] = self.check.outcome
        return out

    def take_report(self) -> dict | None:
        """The plan's line, once, when its exposed time has been measured."""
        report, self.report = self.report, None
        return report
