"""What the trainer says about ``--sync auto`` / ``--bucket-mb auto`` (parallel/autotune.py)."""
from __future__ import annotations

from ..parallel import SCHEDULES, plan_check, schedules


def auto_schedules(cfg) -> tuple:
    """The schedules --sync auto chooses from: overlap-fc's gathers are per micro-batch, so
    not with --accumulate."""
    return tuple(s for s in SCHEDULES if cfg.accumulate == 1 or schedules.get(s).with_accumulation)


def report_plan(auto, say) -> None:
    """Once, when the plan has run a few steps: the choice, predicted and measured exposed time."""
    report = auto.take_report() if auto is not None else None
    if report is None:
        return
    if "check" in report:                       # the plan against blocking, after the fact
        say(plan_check.describe(report["check"]), flush=True)
        return
    buckets = report["buckets"]
    chunk = report.get("chunk_bytes") if report.get("progress") == "priority" else None
    say(f"communication plan: --sync {report['sync']}, {len(buckets)} bucket(s) "
        f"{'/'.join(str(len(g)) for g in buckets)} layers"
        + (f", sent in order of need in {chunk / 1024:g} KiB chunks" if chunk else "")
        + "; exposed per step: predicted "
        f"{report['predicted_exposed_ms']:.2f} ms, measured {report['measured_exposed_ms']:.2f} ms "
        f"(rank 0); predicted step ms: "
        + ", ".join(f"{s} {t:.1f}" for s, t in report["predicted_step_ms"].items())
        + (f"; margin {report['margin'] * 100:.1f} % (spread: compute "
           f"{report['compute_spread'] * 100:.1f} %, link {report['link_spread'] * 100:.1f} %)"
           if report.get("margin") is not None else "")
        + (f"; link probe: {report['link_note']}" if report.get("link_note") else ""), flush=True)
