"""CIFAR-10 from either distribution, read without executing anything from the files.

- ``cifar-10-batches-py``: pickled dicts. They are read with an unpickler that resolves only
  the globals a CIFAR batch needs to rebuild its arrays (numpy's array and scalar
  reconstructors and ``dtype``, under their numpy 1 and numpy 2 module names; ``_codecs.encode``
  restricted to latin-1, which Python 3 writes for bytes at protocol 2). Any other global -- the
  way a crafted pickle calls ``os.system`` -- is refused before it is looked up.
- ``cifar-10-batches-bin``: records of one label byte and 3072 pixel bytes; no pickle at all.

Both give uint8 images (N, 3, 32, 32) and int64 labels; every problem is a DataError naming
the file.
"""
from __future__ import annotations

import io
import os
import pickle
from pathlib import Path

import numpy as np

from ..input_files import NotRegularFile, open_input
from .errors import DataError

TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
TEST = "test_batch"
_PIXELS = 3 * 32 * 32
_RECORD = 1 + _PIXELS


def _latin1_encode(text, encoding="latin1"):
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591"):
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r} is not allowed")
    return text.encode("latin1")


def _allowed_globals() -> dict:
    from numpy._core import multiarray, numeric
    allowed = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype,
               ("_codecs", "encode"): _latin1_encode}
    for package in ("numpy.core", "numpy._core"):       # numpy 1 and numpy 2 pickles
        allowed[(f"{package}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{package}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{package}.numeric", "_frombuffer")] = numeric._frombuffer
    return allowed


class CifarUnpickler(pickle.Unpickler):
    """Resolves only the globals of _allowed_globals(); anything else is an UnpicklingError."""

    _ALLOWED = None

    def find_class(self, module, name):
        if CifarUnpickler._ALLOWED is None:
            CifarUnpickler._ALLOWED = _allowed_globals()
        try:
            return CifarUnpickler._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR-10 "
                                         "batch") from None

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed in a CIFAR-10 batch")


def safe_load(raw: bytes):
    """Unpickle ``raw`` with CifarUnpickler (bytes keys, as the batches were written by Python 2)."""
    return CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()


def _read(path: Path) -> bytes:
    from .validate import check_fits
    try:
        with open_input(path) as f:
            size = os.fstat(f.fileno()).st_size
            check_fits(f"{path}: a CIFAR-10 batch of {size:,} bytes",
                       2 * size)                     # the bytes and the arrays built from them
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except NotRegularFile as exc:
        raise DataError(str(exc)) from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None


def _check_batch(path: Path, data, labels):
    """uint8 (N, 3072) pixels (other integer types only when within 0..255) and N labels."""
    data, labels = np.asarray(data), np.asarray(labels)
    if data.dtype.kind not in "iu" or data.ndim != 2 or data.shape[1] != _PIXELS:
        raise DataError(f"{path}: expected integer pixels of shape (N, {_PIXELS}), got "
                        f"{data.dtype} {data.shape}")
    if data.dtype != np.uint8 and data.size and (data.min() < 0 or data.max() > 255):
        bad = int(np.argmax((data < 0).any(axis=1) | (data > 255).any(axis=1)))
        raise DataError(f"{path}: sample {bad}: pixel values outside 0..255")
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise DataError(f"{path}: expected a list of integer labels, got {labels.dtype} "
                        f"{labels.shape}")
    if len(labels) != len(data):
        raise DataError(f"{path}: {len(data)} images but {len(labels)} labels")
    return data.astype(np.uint8).reshape(-1, 3, 32, 32), labels.astype(np.int64)


def read_python_batch(path: Path):
    raw = _read(path)
    try:
        d = safe_load(raw)
    except pickle.UnpicklingError as exc:
        raise DataError(f"{path}: not a CIFAR-10 python batch ({exc})") from None
    except Exception as exc:       # a damaged pickle raises many kinds
        raise DataError(f"{path}: not a CIFAR-10 python batch ({type(exc).__name__})") from None
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise DataError(f"{path}: not a CIFAR-10 python batch (no b'data' and b'labels')")
    labels = d[b"labels"]
    if isinstance(labels, list) and not all(isinstance(v, int | np.integer) for v in labels):
        raise DataError(f"{path}: labels must be integers")
    return _check_batch(path, d[b"data"], labels)


def read_binary_batch(path: Path):
    raw = _read(path)
    if not raw or len(raw) % _RECORD:
        raise DataError(f"{path}: not a CIFAR-10 binary batch ({len(raw)} bytes, not a multiple "
                        f"of the {_RECORD}-byte record)")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, _RECORD)
    return _check_batch(path, records[:, 1:], records[:, 0])


def read(directory: Path):
    """(x_train, y_train, x_test, y_test) from DIR, DIR/cifar-10-batches-py or
    DIR/cifar-10-batches-bin; the binary files are data_batch_N.bin and test_batch.bin."""
    directory = Path(directory)
    for sub in ("cifar-10-batches-py", "cifar-10-batches-bin"):
        if (directory / sub).is_dir():
            directory = directory / sub
            break
    if (directory / TEST).is_file() or not (directory / f"{TEST}.bin").is_file():
        batches = [read_python_batch(directory / name) for name in TRAIN + [TEST]]
    else:
        batches = [read_binary_batch(directory / f"{name}.bin") for name in TRAIN + [TEST]]
    train, (x_test, y_test) = batches[:-1], batches[-1]
    return (np.concatenate([b[0] for b in train]), np.concatenate([b[1] for b in train]),
            x_test, y_test)
