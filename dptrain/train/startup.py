"""The agreed start-up: every rank checks its own configuration, data and outputs without
communicating, then one collective combines the verdicts, so that one rank's problem stops
every rank with exit 2 and the same line, instead of leaving the others in a collective.

The same exchange compares what the ranks were given (train/fingerprint.py): each sends a
digest of its description; only when the digests differ, which every rank then sees alike,
do all of them post a second exchange of the full descriptions to name the difference."""
from __future__ import annotations

from .. import phase_watch
from ..errors import UsageError


def agree(comm, setup, on_refusal=None, fingerprint=None):
    """Run ``setup()`` here; if it raised a UsageError on any rank, every rank raises the one of
    the lowest such rank (prefixed ``rank R:`` unless R is 0) after ``on_refusal()``.
    With ``fingerprint`` (setup's result -> (what, value) pairs), the ranks' descriptions
    must also be equal, else every rank raises the line that names the first difference."""
    from . import fingerprint as fp
    error, result, fields, detail = None, None, None, None
    try:
        result = setup()
        if fingerprint is not None:
            fields = fingerprint(result)
    except UsageError as exc:
        error, detail = str(exc), getattr(exc, "detail", None)
    posted = [(comm.rank, error, None if fields is None else fp.digest(fields))]
    with phase_watch.start_up("the start-up agreement (a rank did not reach it)"):
        verdicts = sorted(comm.allreduce_obj(posted if error or fingerprint else []))
    errors = [(rank, message) for rank, message, _ in verdicts if message is not None]
    problem = None
    if errors:
        rank, message = errors[0]
        problem = message if rank == 0 else f"rank {rank}: {message}"
    elif len({d for _, _, d in verdicts}) > 1:       # seen alike: every rank posts this
        with phase_watch.start_up("the start-up comparison of what the ranks were given"):
            problem = fp.disagreement(comm.allreduce_obj([(comm.rank, fields)]))
    if problem:
        if on_refusal is not None:
            on_refusal()
        refusal = UsageError(problem)
        refusal.detail = detail if errors and errors[0][0] == comm.rank else None   # --debug
        raise refusal
    return result
