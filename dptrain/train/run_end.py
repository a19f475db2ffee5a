"""The end of a run, after its last step: the final checkpoint, the last collective-order
check, --save-weights and the merged trace, each after every pending update."""
from __future__ import annotations

from ..comm import order_check
from ..errors import TrainingFailure, on_this_rank_only
from .setup import save_weights


def finish(cfg, comm, dp, model, tracer, is_root: bool, guard, save_checkpoint,
           complete: bool) -> None:
    """``complete``: every planned step ran (the end-of-training checkpoint is due)."""
    if cfg.checkpoint_dir and complete:
        save_checkpoint()
    if isinstance(comm, order_check.CheckedCommunicator):
        dp.flush()
        comm.verify()
    if cfg.save_weights and is_root:
        dp.flush()
        try:
            save_weights(model, cfg.save_weights, cfg.model)
        except OSError as exc:
            raise on_this_rank_only(TrainingFailure(
                f"cannot write --save-weights {cfg.save_weights} ({exc.strerror or exc})"))
    if tracer is not None:
        dp.flush()
        with guard("gathering the trace", "end"):
            tracer.write_merged(comm, cfg.trace)
