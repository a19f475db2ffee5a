"""Gradient-synchronisation schedules: blocking and overlap (Lee et al.)."""
from .data_parallel import PROGRESS_MODES, SCHEDULES, DataParallel

__all__ = ["DataParallel", "SCHEDULES", "PROGRESS_MODES"]
