"""Data sets from a user's own NumPy arrays, and the ``arrays:NAME`` names that refer to them.

A script that holds its data in memory (generated, read by its own code) hands the arrays to
``from_arrays`` for a Dataset, or to ``register`` for a name that ``load`` and the trainer
accept like any other ``--dataset``: the arrays then go through the same checks (shapes,
non-finite pixels, labels that are not class ids, the held-out split) and the same
normalisation as an ``npz:FILE``. Every rank registers its own arrays; the start-up compares
their fingerprints, so arrays that differ between ranks are exit 2, not a silent mix.
"""
from __future__ import annotations

from .assemble import Dataset, assemble, fixed_split
from .errors import DataError
from .validate import as_images, as_labels, inferred_classes

PREFIX = "arrays"
_registry: dict[str, object] = {}          # name -> loader(num_classes) -> Dataset


def from_arrays(x, y, x_test=None, y_test=None, *, name: str = PREFIX,
                num_classes: int | None = None) -> Dataset:
    """A Dataset from arrays: images ``x`` as (N, H, W) or (N, C, H, W) numbers (uint8 is
    scaled to [0, 1]), labels ``y`` as N integer class ids; ``x_test``/``y_test`` the test
    split, else a fixed fifth of ``x`` is held out (as for ``npz:FILE``). ``num_classes``
    None: 1 + the largest training label, every class below it present. Normalised with the
    training split's per-channel mean and standard deviation. Raises DataError naming
    ``name`` and what is wrong."""
    if (x_test is None) != (y_test is None):
        raise DataError(f"{name}: x_test and y_test must come together")
    if x_test is not None:
        return assemble(name, x, y, x_test, y_test, num_classes=num_classes)
    x = as_images(x, f"{name} images")             # before the split: sample = row of x
    y = as_labels(y, len(x), f"{name} labels", num_classes)
    if num_classes is None:                        # from every label, as for npz
        num_classes = inferred_classes(y, f"{name} labels")
    return assemble(name, *fixed_split(x, y, max(1, len(x) // 5)), num_classes=num_classes)


def register(x, y, x_test=None, y_test=None, *, name: str = "default") -> str:
    """Make the arrays loadable as ``arrays:NAME`` in this process (by ``data.load``, by
    ``dptrain.fit`` and by a config's ``dataset``); returns that name. The arrays are kept
    by reference and checked when loaded; registering a name again replaces it."""
    spec = _spec(name)
    _registry[spec] = lambda num_classes: from_arrays(x, y, x_test, y_test, name=spec,
                                                      num_classes=num_classes)
    return spec


def register_dataset(ds: Dataset, *, name: str = "default") -> str:
    """Make an already built Dataset loadable as ``arrays:NAME``; returns that name."""
    if not isinstance(ds, Dataset):
        raise TypeError(f"expected a dptrain.data.Dataset, got {type(ds).__name__}")
    spec = _spec(name)

    def loader(num_classes):
        if num_classes is not None and num_classes != ds.num_classes:
            raise DataError(f"{spec}: the data set has {ds.num_classes} classes, not "
                            f"--num-classes {num_classes}")
        return ds
    _registry[spec] = loader
    return spec


def load_registered(spec: str, num_classes: int | None = None) -> Dataset:
    """The Dataset registered as ``spec`` (``arrays:NAME``)."""
    if spec not in _registry:
        raise DataError(f"--dataset {spec}: no arrays are registered under this name in this "
                        "process (dptrain.data.register(x, y, name=...) or "
                        "dptrain.fit(dataset=(x, y)) registers them)")
    return _registry[spec](num_classes)


def _spec(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a registered data set needs a non-empty name, got {name!r}")
    return f"{PREFIX}:{name}"
