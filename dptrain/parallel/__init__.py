"""Data parallelism: DataParallel, and the gradient schedules (schedules/: blocking, overlap
after Lee et al., overlap-fc) and progress engines (engine.py) it runs, registered by name."""
from . import schedules
from .data_parallel import PROGRESS_MODES, SCHEDULES, DataParallel

__all__ = ["DataParallel", "SCHEDULES", "PROGRESS_MODES", "schedules"]
