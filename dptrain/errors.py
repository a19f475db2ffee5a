"""The two kinds of failure the command line distinguishes (DESIGN.md, exit codes)."""


class UsageError(ValueError):
    """Bad input or configuration: one line on stderr, exit 2."""


class TrainingFailure(RuntimeError):
    """A failure during training (non-finite loss, dead rank, stuck collective): exit 3."""


EXIT_OK, EXIT_USAGE, EXIT_FAILURE = 0, 2, 3
