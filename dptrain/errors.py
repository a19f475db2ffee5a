"""The kinds of failure the command line distinguishes (docs/errors.md, exit codes)."""


class UsageError(ValueError):
    """Bad input or configuration: one line on stderr, exit 2."""


class TrainingFailure(RuntimeError):
    """A failure during training (non-finite loss, dead rank, stuck collective): exit 3."""


class RankFailure(RuntimeError):
    """An unexpected exception on one rank during training, with the step it happened in:
    that rank reports it and ends the whole job (exit 3)."""

    def __init__(self, rank: int, step: int, cause: BaseException):
        super().__init__(f"rank {rank} failed at step {step}: {type(cause).__name__}: {cause}")
        self.rank, self.step, self.cause = rank, step, cause


EXIT_OK, EXIT_USAGE, EXIT_FAILURE, EXIT_INTERRUPTED = 0, 2, 3, 130


def on_this_rank_only(exc: BaseException) -> BaseException:
    """Mark an error the other ranks did not see (raised after the agreed start-up): the
    command line reports it from this rank and ends the whole job, so no rank waits for it."""
    exc.local = True
    return exc


class ModelError(UsageError):
    """A model from the user's code that cannot be built (models/reference.py): exit 2, one
    line naming the file and line; ``detail`` holds the traceback that --debug prints."""

    def __init__(self, message: str, detail: str | None = None):
        super().__init__(message)
        self.detail = detail
