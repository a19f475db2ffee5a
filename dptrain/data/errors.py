"""The one error type of the data package, on its own so that every reader and check can
raise it without importing another reader (no import circles within data/)."""


class DataError(ValueError):
    """A data set that cannot be read or does not make sense."""
