"""What a run says about itself before its first step: the console line (rank 0, unless
--quiet) and the first metrics record, both from values the trainer hands over."""
from __future__ import annotations

import dataclasses

from .. import backend, native
from ..comm.hierarchical import choice_of
from ..comm.link_probe import describe as describe_link


def start_line(cfg, model, ds, size: int, transport: str, transport_why: str,
               device_reads: bool, link, length, steps_per_epoch: int, resumed_from,
               step: int, topology: str = "") -> str:
    """``link``: the measured link (AlphaBeta) when the plan is automatic, else None."""
    return (f"dptrain: {cfg.model} ({model.num_params():,} params) on {ds.name} "
            f"({len(ds.x_train)} train / {len(ds.x_test)} test), batch {cfg.batch_size}, "
            f"{cfg.optimizer}, {size} rank(s), {backend.device_name}"
            + (f" over {transport}" if size > 1 else "")
            + (f" ({transport_why})" if size > 1 and device_reads else "")
            + (f", link {describe_link(link)} (measured)" if link is not None else "")
            + (f"; {topology}" if topology else "")
            + f", {cfg.threads} thread(s) per rank"
            + (f", CPU kernels {native.status()}" if backend.device_name == "cpu" else "")
            + (", sync-bn" if cfg.sync_bn else "")
            + f"; runs {length.describe(steps_per_epoch)}"
            + (f", resumed from {resumed_from.name} at step {step}" if resumed_from else ""))


def topology(layout, comm) -> str:
    """'2 nodes x 2 ranks: intra-node ..., inter-node ..., reduction hierarchical for buckets
    from 96 KiB, flat below' (several nodes only: one node says nothing new)."""
    if layout is None or layout.nodes == 1:
        return ""
    choice = choice_of(comm)
    if choice is None:
        return f"{layout.describe()}, flat reduction ({layout.why_flat() or 'as asked'})"
    links = "".join(f"{name} {describe_link(link)}, " for name, link in
                    (("intra-node", choice.intra), ("inter-node", choice.inter)) if link is not None)
    return f"{layout.describe()}: {links}reduction {choice.describe()}"


def run_record(cfg, size: int, steps_per_epoch: int, total_steps: int, length, step: int,
               resumed_from) -> dict:
    """The first metrics line: what this run is and how long it runs."""
    from .. import __version__
    return {"version": __version__, "ranks": size, "device": backend.device_name,
            "steps_per_epoch": steps_per_epoch, "total_steps": total_steps,
            "epochs": length.epochs, "ends_by": length.ends_by, "start_step": step,
            "resumed_from": str(resumed_from) if resumed_from else None,
            "cpu_kernels": native.status() if backend.device_name == "cpu" else None,
            "config": dataclasses.asdict(cfg)}
