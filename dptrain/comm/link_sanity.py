"""What a measured link may be (comm/link_probe.py): bounds a fitted line must meet, the
memory copy that sets the upper one, and the correction when a line never meets them.

An Allreduce of n bytes writes the n-byte sum into this rank's buffer after reading its own
and the others' contributions: whatever carries it, it moves at least the bytes of an
in-process copy of n bytes, so a link measured faster than that copy is a misreading (on a
loaded machine: a rank descheduled during the small transfers flattens the fitted line). A
latency of zero or less is a line bent by noise too (load only adds time, so it cannot come
from a quiet link), and a bandwidth below MIN_BPS is no link a data-parallel job runs over.
"""
from __future__ import annotations

import time

import numpy as np

from .emulated import AlphaBeta

MIN_BPS = 1e5                  # 100 kbit/s
ALPHA_FLOOR_S = 1e-6           # a shared-memory round trip: the latency a clipped line gets
COPY_REPEATS = 5


def time_copies(xp, sizes, repeats: int = COPY_REPEATS, clock=time.perf_counter) -> list[float]:
    """Per size, the 2nd fastest of ``repeats`` in-process copies of that many bytes (the
    same estimator as the Allreduce timings, so both see the machine's load alike)."""
    from .. import backend
    done = backend.synchronize if xp is not np else (lambda: None)
    src = xp.ones(max(sizes) // 4, dtype=np.float32)
    dst = xp.empty_like(src)
    out = []
    for nbytes in sizes:
        a, b = src[:nbytes // 4], dst[:nbytes // 4]
        xp.copyto(b, a)
        done()
        spent = []
        for _ in range(repeats):
            t0 = clock()
            xp.copyto(b, a)
            done()
            spent.append(clock() - t0)
        out.append(float(np.quantile(spent, 0.25)))
    return out


def implausible(link: AlphaBeta, copy_bps: float) -> str:
    """Why ``link`` cannot be the link measured ('' when it can)."""
    bw = 8.0 / link.beta
    if bw > copy_bps:
        return f"{bw / 1e9:.3g} Gbit/s is faster than a memory copy ({copy_bps / 1e9:.3g} Gbit/s)"
    if bw < MIN_BPS:
        return f"{bw:.3g} bit/s is below {MIN_BPS:.0e} bit/s"
    if not link.alpha > 0:
        return f"latency {link.alpha * 1e6:.3g} us is not positive"
    return ""


def clipped(link: AlphaBeta, copy_bps: float, why: str, tries: int) -> tuple[AlphaBeta, str]:
    """The line moved into the bounds, and the note that says so: a link faster than memory
    copy is planned as a shared-memory link at memcpy speed."""
    bw = min(max(8.0 / link.beta, MIN_BPS), copy_bps)
    alpha = link.alpha if link.alpha > 0 else ALPHA_FLOOR_S
    fix = ("planned as a shared-memory link at memcpy speed" if 8.0 / link.beta > copy_bps
           else "clipped into the bounds")
    return AlphaBeta(alpha, bw), f"probe implausible after {tries} tries ({why}): {fix}"
