"""dptrain: data-parallel training of convolutional image classifiers over MPI.

The public Python API (docs/api.md): ``dptrain.fit`` (one training run, as ``dptrain train``
runs it), its ``TrainResult`` and ``JobEnded``, and the modules ``nn`` (layers,
containers, losses), ``models`` (Sequential, the zoo), ``optim`` (optimisers, schedules) and
``data`` (data sets). Everything is imported on first use: ``import dptrain`` loads neither
NumPy nor MPI, so the command line can install its signal handlers first.
"""
__version__ = "0.1.0"

__all__ = ["fit", "TrainResult", "JobEnded", "nn", "models", "optim", "data"]

_FROM_API = ("fit", "TrainResult", "JobEnded")
_MODULES = ("nn", "models", "optim", "data", "comm", "parallel")


def __getattr__(name):
    import importlib
    if name in _FROM_API:
        return getattr(importlib.import_module(".api", __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dptrain' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
