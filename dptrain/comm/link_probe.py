"""The link's alpha and beta, measured with a few Allreduces at start-up, agreed by all ranks.

A ring Allreduce of n bytes on P ranks takes 2 (P-1) alpha + 2 (P-1)/P n beta (the model of
comm/emulated.py), a straight line in n. Each rank times REPEATS back-to-back Allreduces of a
few sizes (a fixed count, so every rank posts the same collectives) and keeps a low quantile
per size (QUANTILE): load on the machine only ever adds time to a transfer, so the fast end of
the samples is the closest to the transfer, but not the single fastest sample, so that one
misread clock cannot set the line. The ranks all-gather those times and take, per size, the
smallest over ranks (the rank that arrived last waited least for the others: its time is
closest to the transfer itself). Rank 0 fits the line by least squares and broadcasts alpha
and beta, so every rank plans with the same numbers. Before the fit, a smaller transfer's time
is capped at the time of any larger one (a link never moves fewer bytes more slowly).

Sanity bounds (comm/link_sanity.py): the fitted link must not be faster than an in-process
memory copy of the largest size, its latency must be positive and its bandwidth at least
MIN_BPS. On a loaded 2-core machine a rank descheduled during the 1 KiB transfers once made the
line flat and read 8e3 Gbit/s; such a fit is measured again (at most MAX_TRIES times, rank 0
decides for all), and if it is still implausible it is clipped into the bounds (a link faster
than memory copy is planned as a shared-memory link at memcpy speed) and the link says so
(``note``, printed with it). The relative spread of the largest size's samples travels with the
link (``spread``): the planner's margin grows with it (parallel/autotune.py).
Through ``--net-emulate`` the communicator is the emulated one, so this measures
the emulated link (plus the real copy underneath it).

The default sizes (1 KiB to 512 KiB, five Allreduces each) move about 3.4 MB in all: 0.3 s at
100 Mbit/s on 2 ranks, a few milliseconds on a cluster network.
"""
from __future__ import annotations

import time

import numpy as np

from . import link_sanity
from .emulated import AlphaBeta

SIZES = (1 << 10, 16 << 10, 128 << 10, 512 << 10)     # bytes
REPEATS = 5                                           # timed, after one untimed per size
QUANTILE = 0.25                                       # of each size's samples: the 2nd fastest of 5
MAX_TRIES = 3                                         # measurements before the fallback


class MeasuredLink(AlphaBeta):
    """A probed link: the agreed line, the relative spread of its samples, and a note when
    the bounds had to correct it (empty when the measurement was plausible)."""

    def __init__(self, latency_s: float, bandwidth_bps: float, spread: float = 0.0,
                 note: str = "", tries: int = 1):
        super().__init__(latency_s, bandwidth_bps)
        self.spread, self.note, self.tries = float(spread), str(note), int(tries)


def fit_alpha_beta(sizes, seconds, p: int) -> AlphaBeta:
    """Least-squares line t = a + b n through (bytes, seconds), as a ring Allreduce's alpha and
    beta on p ranks. A negative intercept is refitted through the origin; a slope that is not
    positive (a link too fast to see at these sizes) becomes one byte per picosecond."""
    order = np.argsort(np.asarray(sizes, dtype=np.float64))
    n = np.asarray(sizes, dtype=np.float64)[order]
    t = np.minimum.accumulate(np.asarray(seconds, dtype=np.float64)[order][::-1])[::-1]
    A = np.stack([np.ones_like(n), n], axis=1)
    (a, b), *_ = np.linalg.lstsq(A, t, rcond=None)
    if a < 0:
        a, b = 0.0, float(n @ t / (n @ n))
    b = max(float(b), 1e-12)
    alpha = float(a) / (2 * (p - 1))
    beta = b * p / (2 * (p - 1))                      # seconds per byte
    return AlphaBeta(alpha, 8.0 / beta)


def low_quantile(samples) -> float:
    return float(np.quantile(np.asarray(samples, dtype=np.float64), QUANTILE))


def relative_spread(samples) -> float:
    """Interquartile range over the median (0 for fewer than two samples)."""
    s = np.asarray(samples, dtype=np.float64)
    if s.size < 2 or np.median(s) <= 0:
        return 0.0
    q1, q3 = np.quantile(s, [0.25, 0.75])
    return float((q3 - q1) / np.median(s))


def sample_allreduces(comm, xp=np, sizes=SIZES, repeats=REPEATS, clock=time.perf_counter):
    """This rank's times (seconds) of ``repeats`` Allreduces per size (every rank calls this).
    Device buffers are timed to completion on the device (NCCL returns before it)."""
    from .. import backend
    buf = xp.zeros(max(sizes) // 4, dtype=np.float32)
    done = backend.synchronize if xp is not np else (lambda: None)
    samples = []
    for nbytes in sizes:
        view = buf[:nbytes // 4]
        comm.allreduce(view)                          # untimed: lines the ranks up
        done()
        spent = []
        for _ in range(repeats):
            t0 = clock()
            comm.allreduce(view)
            done()
            spent.append(clock() - t0)
        samples.append(spent)
    return samples


def time_allreduces(comm, xp=np, sizes=SIZES, repeats=REPEATS, clock=time.perf_counter) -> list[float]:
    """This rank's low-quantile time of an Allreduce of each size (every rank calls this)."""
    return [low_quantile(s) for s in sample_allreduces(comm, xp, sizes, repeats, clock)]


def _per_size(timed) -> tuple[list[float], float]:
    """A timer's answer (per size: one time, or the samples) as times and the spread."""
    if all(np.ndim(x) == 0 for x in timed):
        return [float(x) for x in timed], 0.0
    return [low_quantile(s) for s in timed], relative_spread(timed[-1])


def measure_link(comm, xp=np, sizes=SIZES, repeats=REPEATS, timer=None,
                 copy_timer=None) -> MeasuredLink:
    """The agreed alpha-beta model of ``comm``'s link (P > 1; every rank calls this).
    ``timer(comm)`` replaces the Allreduce timings (per size: a time or the samples) and
    ``copy_timer(sizes)`` the memory-copy timings (tests)."""
    timer = timer or (lambda c: sample_allreduces(c, xp, sizes, repeats))
    copies = (copy_timer or (lambda s: link_sanity.time_copies(xp, s)))(sizes)
    for tries in range(1, MAX_TRIES + 1):
        times, spread = _per_size(timer(comm))
        mine = np.asarray(list(times) + [float(copies[-1]), spread], dtype=np.float64)
        every = np.asarray(comm.allgather(mine))
        verdict = None
        if comm.rank == 0:
            n = len(sizes)
            link = fit_alpha_beta(sizes, every[:, :n].min(axis=0), comm.size)
            copy_bps = 8.0 * max(sizes) / max(float(every[:, n].min()), 1e-12)
            why, note = link_sanity.implausible(link, copy_bps), ""
            if why and tries == MAX_TRIES:
                link, note = link_sanity.clipped(link, copy_bps, why, tries)
            verdict = (link.alpha, 8.0 / link.beta, float(every[:, n + 1].max()),
                       bool(why) and tries < MAX_TRIES, note)
        alpha, bandwidth, spread, retry, note = comm.bcast_obj(verdict, root=0)
        if not retry:
            return MeasuredLink(alpha, bandwidth, spread, note, tries)
    raise AssertionError("unreachable: the last try always returns")


def describe(link: AlphaBeta) -> str:
    """'alpha 21.0 us, 0.98 Gbit/s' for a run's first line (with the probe's note, if any)."""
    bw = 8.0 / link.beta
    bw_text = f"{bw / 1e9:.3g} Gbit/s" if bw >= 1e9 else f"{bw / 1e6:.3g} Mbit/s"
    note = getattr(link, "note", "")
    return f"alpha {link.alpha * 1e6:.3g} us, {bw_text}" + (f" [{note}]" if note else "")
