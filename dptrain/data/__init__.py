"""Data sets, deterministic global batches, per-sample keyed augmentation.

``load(name)`` reads a data set by the names ``--dataset`` takes; ``from_arrays(x, y, ...)``
builds one from a script's own arrays, ``register(x, y, ..., name=...)`` names them
``arrays:NAME`` for ``load``, a config file and ``dptrain.fit``."""
from . import augment
from .datasets import Dataset, load
from .in_memory import from_arrays, register
from .errors import DataError
from .readers import read_idx
from . import samplers
from .samplers import UniformSampler
from .sampling import global_batches, rank_slice, steps_per_epoch

__all__ = ["Dataset", "DataError", "load", "from_arrays", "register", "read_idx", "augment", "samplers", "UniformSampler",
           "global_batches", "rank_slice", "steps_per_epoch"]
