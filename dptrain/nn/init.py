"""Weight initialisers. Each takes (rng, shape, fan_in, fan_out) and returns a numpy array.

He (Kaiming) normal is the seed thesis's choice: N(0, sqrt(2 / n_in)), biases zero.
"""
from __future__ import annotations

import numpy as np


def he(rng, shape, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)


def glorot(rng, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def lecun(rng, shape, fan_in, fan_out):
    return rng.normal(0.0, np.sqrt(1.0 / fan_in), size=shape)


def zeros(rng, shape, fan_in, fan_out):
    return np.zeros(shape)


INITIALIZERS = {"he": he, "glorot": glorot, "xavier": glorot, "lecun": lecun, "zeros": zeros}


def get(name: str):
    try:
        return INITIALIZERS[name]
    except KeyError:
        raise ValueError(f"unknown initialiser {name!r} (choose {', '.join(INITIALIZERS)})") from None
