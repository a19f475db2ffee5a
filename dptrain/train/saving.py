"""Settling and saving: what makes a checkpoint hold a known-finite state of one step.

``settle`` completes every pending update, reduction and check, so that what is saved next
is known to be finite; ``save`` writes the checkpoint on rank 0 and then agrees over every
rank, so that once any rank returns the checkpoint is on disk (or every rank stops with
the reason: a full disk ends the job, it never leaves ranks running ahead of a save)."""
from __future__ import annotations

from ..errors import TrainingFailure
from . import checkpointing, faults
from .final_state import check_finite_state


def settle(dp, step_metrics, check_step, model, comm, step: int, guard, sync_bn: bool) -> list:
    """Returns the step results this completed (for the epoch's sums)."""
    dp.flush()
    problem = None if dp.watch.synchronous else dp.watch.check()
    results = step_metrics.drain()
    for r in results:
        check_step(r)
    if problem:
        raise TrainingFailure(problem)
    check_finite_state(model, comm, step, guard, not sync_bn)
    return results


def save(cfg, comm, guard, position: "checkpointing.Position", model, opt, sampler,
         comm_plan) -> None:
    """Rank 0 writes; every rank learns whether it could."""
    error = None
    if comm.rank == 0:
        try:
            checkpointing.write(cfg, position, model, opt, sampler, comm_plan=comm_plan)
        except OSError as exc:                 # a full disk, a quota, a vanished mount
            error = (f"cannot write the checkpoint of step {position.step} to "
                     f"{exc.filename or cfg.checkpoint_dir} ({exc.strerror or exc}); "
                     "the previous checkpoints are intact")
    faults.at_phase("checkpoint", comm.rank)
    with guard(f"agreement after the checkpoint of step {position.step}", "checkpoint"):
        errors = comm.allreduce_obj([error] if error else [])
    if errors:
        raise TrainingFailure(errors[0])
