import numpy as np
import pytest

from dptrain import backend


@pytest.fixture
def float64():
    """Build layers and models in float64 for the duration of a test."""
    old = backend.dtype
    backend.set_dtype("float64")
    yield np.float64
    backend.dtype = old


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
