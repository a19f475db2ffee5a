"""Data sets, deterministic global batches, per-sample keyed augmentation."""
from . import augment
from .datasets import Dataset, load
from .readers import DataError, read_idx
from . import samplers
from .samplers import UniformSampler
from .sampling import global_batches, rank_slice, steps_per_epoch

__all__ = ["Dataset", "DataError", "load", "read_idx", "augment", "samplers", "UniformSampler",
           "global_batches", "rank_slice", "steps_per_epoch"]
