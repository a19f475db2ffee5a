"""The agreed start-up: every rank checks its own configuration, data and outputs without
communicating, then one collective combines the verdicts, so that one rank's problem stops
every rank with exit 2 and the same line, instead of leaving the others in a collective."""
from __future__ import annotations

from .. import phase_watch
from ..errors import UsageError


def agree(comm, setup, on_refusal=None):
    """Run ``setup()`` here; if it raised a UsageError on any rank, every rank raises the one of
    the lowest such rank (prefixed ``rank R:`` unless R is 0) after ``on_refusal()``."""
    error, result = None, None
    try:
        result = setup()
    except UsageError as exc:
        error = str(exc)
    with phase_watch.start_up("the start-up agreement (a rank did not reach it)"):
        errors = comm.allreduce_obj([(comm.rank, error)] if error is not None else [])
    if errors:
        if on_refusal is not None:
            on_refusal()
        rank, message = min(errors)
        raise UsageError(message if rank == 0 else f"rank {rank}: {message}")
    return result
