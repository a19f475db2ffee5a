"""Keep freed memory in the process (glibc's malloc), so a training step does not fault in
fresh pages for every large temporary.

By default glibc serves large blocks (above a threshold that adapts, up to 32 MiB) with mmap
and returns them to the system on free, and trims the heap's free top beyond 128 KiB: every
step's activation-sized temporaries (4.7 MB each in thesis-cnn's first block) then come back
as new pages that the kernel must zero and map on first touch. Measured on the 2-core EPYC
(thesis-cnn, batch 64, float32, 1 thread, CPU time of one step): 28.8 -> 22.1 ms. The peak
resident size is unchanged (the same blocks are live at the peak); the process keeps what it
freed until it exits. A no-op where the C library has no mallopt (not glibc).

mallopt is looked up in the process's own symbols, never through ctypes.util.find_library:
that runs ``ldconfig -p`` in a forked child, and this runs after MPI has started, where a fork
is unsafe with registered memory and leaves, until its exec, a second process that looks
exactly like the rank (a signal meant for the rank could reach that copy and be lost).
"""
from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20      # glibc's largest: blocks above still come from mmap
TRIM_THRESHOLD = 1 << 30
TOP_PAD = 64 << 20

_done = False


def keep_freed_memory() -> bool:
    """Set the thresholds once per process; True where mallopt accepted them."""
    global _done
    if _done:
        return True
    try:
        mallopt = ctypes.CDLL(None).mallopt       # the C library the process already runs
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _done = all(mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (M_TOP_PAD, TOP_PAD)))
    return _done
