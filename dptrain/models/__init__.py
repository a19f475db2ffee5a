"""Sequential models, the model zoo and the per-layer summary."""
from .sequential import Sequential
from .summary import Summary
from .zoo import get, names

__all__ = ["Sequential", "Summary", "get", "names"]
