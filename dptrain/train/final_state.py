"""The state a run is about to evaluate, checkpoint or save must be finite.

The per-step checks (parallel/nonfinite.py, the step's loss) judge what a step *computed*:
its gradients and its loss. Two things escape them. The last update applied by a settle
(flush) is only ever judged by the next step's loss, and there is none after the last step;
and batch-norm running statistics, updated in the forward pass but used only in evaluation,
can overflow while the loss and gradients are still finite (sgd at --lr 50: step 3's
running variance becomes inf, the run used to end exit 0 with a NaN test loss and weights
that `dptrain eval` refuses). So every settle, which precedes every evaluation, checkpoint
and --save-weights, looks at the parameters and buffers themselves: one pass, not per step.
"""
from __future__ import annotations

from .. import backend
from ..errors import TrainingFailure


def first_nonfinite(model) -> str | None:
    """The name ("<layer>.<array>") of the first parameter or buffer holding NaN or inf."""
    xp = backend.xp
    for name, arr in list(model.named_params()) + list(model.named_buffers()):
        if arr.size and not bool(xp.isfinite(arr).all()):
            return name
    return None


def check_finite_state(model, comm, step: int, guard, rank_local: bool) -> None:
    """Raise TrainingFailure, on every rank alike, if the model holds NaN/inf after ``step``
    steps. Parameters are the same on every rank (same reduced updates); buffers are too
    unless ``rank_local`` (no --sync-bn), and only then, if the model has buffers, is the
    verdict all-gathered: both come from the agreed configuration and model layout, so the
    collective is posted by every rank or by none."""
    rank_local = rank_local and any(True for _ in model.named_buffers())
    name = first_nonfinite(model)
    where = f"after step {step - 1}" if step > 0 else "before the first step"
    found = [(comm.rank, name)] if name else []
    if rank_local and comm.size > 1:
        with guard(f"agreement on finite parameters after step {step - 1}", "check"):
            found = sorted(comm.allreduce_obj(found))
    if found:
        rank, name = found[0]
        on = f" on rank {rank}" if rank_local and comm.size > 1 else ""
        raise TrainingFailure(f"{name} holds NaN or infinite values {where}{on} "
                              "(the run diverged; nothing was saved from this state)")
