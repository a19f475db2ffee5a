"""The two kinds of failure the command line distinguishes (DESIGN.md, exit codes)."""


class UsageError(ValueError):
    """Bad input or configuration: one line on stderr, exit 2."""


class TrainingFailure(RuntimeError):
    """A failure during training (non-finite loss, dead rank, stuck collective): exit 3."""


EXIT_OK, EXIT_USAGE, EXIT_FAILURE = 0, 2, 3


def on_this_rank_only(exc: BaseException) -> BaseException:
    """Mark an error the other ranks did not see (raised after the agreed start-up): the
    command line reports it from this rank and ends the whole job, so no rank waits for it."""
    exc.local = True
    return exc
