"""The compiled CPU kernels (src/*.c), loaded with ctypes when ``make`` has built them.

They replace NumPy passes that the array code cannot fuse (docs/performance.md says which
and by how much). Everything here is optional: without a build (no compiler, a failed
build, sources edited since) or with ``DPTRAIN_NATIVE=off``, ``library()`` is None and the
layers run their NumPy code; ``--kernels generic`` turns the compiled families off as it
turns off the CUDA ones (backend.CPU_KERNEL_FAMILIES).

``DPTRAIN_NATIVE_ISA`` forces one level (generic, x86-64-v3, x86-64-v4), for tests and for a
node whose /proc/cpuinfo cannot be read.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import backend as backends

SRC_DIR = Path(__file__).resolve().parent / "src"
BUILD_DIR = Path(__file__).resolve().parent / "_build"
SOURCE_SUFFIXES = (".c", ".h")

# What each x86-64 level needs from the CPU (the flags /proc/cpuinfo lists).
LEVEL_FLAGS = {
    "x86-64-v3": {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe"},
    "x86-64-v4": {"avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "avx512f", "avx512bw",
                  "avx512cd", "avx512dq", "avx512vl"},
}


def source_digest() -> str:
    """A digest of the kernel sources (names and contents) and of build.py (the compiler
    flags), part of each library's name."""
    h = hashlib.blake2b(digest_size=6)
    for path in [*sorted(p for p in SRC_DIR.iterdir() if p.suffix in SOURCE_SUFFIXES),
                 SRC_DIR.parent / "build.py"]:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def library_name(isa: str, digest: str) -> str:
    return f"libdpn-{isa}-{digest}.so"


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def supported_levels() -> list[str]:
    """The levels this CPU runs, best first."""
    forced = os.environ.get("DPTRAIN_NATIVE_ISA")
    if forced:
        return [forced]
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ["generic"]
    flags = _cpu_flags()
    return [isa for isa in ("x86-64-v4", "x86-64-v3") if LEVEL_FLAGS[isa] <= flags] + ["generic"]


def disabled() -> bool:
    return os.environ.get("DPTRAIN_NATIVE", "on").lower() in ("0", "off", "no", "false")


@lru_cache(maxsize=1)
def _load():
    """(library, isa) of the best level built for the current sources, or (None, why)."""
    if disabled():
        return None, "off ($DPTRAIN_NATIVE)"
    digest = source_digest()
    for isa in supported_levels():
        path = BUILD_DIR / library_name(isa, digest)
        if not path.exists():
            continue
        lib = ctypes.CDLL(str(path))
        lib.dpn_isa.restype = ctypes.c_char_p
        if lib.dpn_isa().decode() != isa:        # a file renamed by hand: not trusted
            continue
        return lib, isa
    return None, "not built (make builds them)"


def library():
    """The loaded library, or None (the NumPy code runs)."""
    return _load()[0]


def status() -> str:
    """One line for banners and reports: the level in use, or why none is."""
    lib, what = _load()
    return f"{what} ({source_digest()})" if lib is not None else what


def reload() -> None:
    """Forget the loaded library (tests switch DPTRAIN_NATIVE / DPTRAIN_NATIVE_ISA)."""
    _load.cache_clear()
    function.cache_clear()


@lru_cache(maxsize=None)
def function(name: str, *argtypes):
    """The library's function ``name`` taking ``argtypes`` (ctypes types; arrays go as
    c_void_p, see ``ptr``) and returning nothing, or None without a library."""
    lib = library()
    if lib is None:
        return None
    fn = getattr(lib, name)
    fn.argtypes, fn.restype = argtypes, None
    return fn


def ptr(a: np.ndarray, dtype=None) -> int:
    """The address of a C-contiguous array, for a c_void_p argument (checked: a kernel reads
    memory by its own arithmetic, so a strided view or a wrong dtype would be read wrongly)."""
    if not a.flags.c_contiguous or (dtype is not None and a.dtype != dtype):
        raise ValueError(f"native kernel argument must be C-contiguous {dtype}, got "
                         f"{a.dtype} with strides {a.strides}")
    return a.ctypes.data


def suffix(dtype) -> str:
    """The kernels' suffix for ``dtype``: _f32 or _f64."""
    return {np.dtype(np.float32): "_f32", np.dtype(np.float64): "_f64"}[np.dtype(dtype)]


# The dtypes the layers hand to the compiled kernels; tests add float64 to check their
# gradients against finite differences (training in float64 keeps the NumPy arithmetic that
# the recordings hold bit for bit, tests/recordings).
DTYPES = (np.float32,)


def runs(x, family: str, backend=None) -> bool:
    """Whether ``family``'s compiled kernels run on ``x``: a NumPy array of DTYPES, the family
    enabled by ``backend``'s --kernels (None: the process default) and the library built."""
    return (isinstance(x, np.ndarray) and x.dtype in DTYPES
            and (backend or backends.current()).kernels_enabled(family)
            and library() is not None)
