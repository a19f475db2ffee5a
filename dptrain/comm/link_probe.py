"""The link's alpha and beta, measured with a few Allreduces at start-up, agreed by all ranks.

A ring Allreduce of n bytes on P ranks takes 2 (P-1) alpha + 2 (P-1)/P n beta (the model of
comm/emulated.py), a straight line in n. Each rank times back-to-back Allreduces of a few
sizes (a fixed count, so every rank posts the same collectives), keeps the fastest per size
(load on the machine only ever adds time to a transfer, so the minimum is the closest to it);
the ranks all-gather those times and take, per size, the smallest over ranks (the rank that
arrived last waited least for the others: its time is closest to the transfer itself). Rank 0
fits the line by least squares and broadcasts alpha and beta, so every rank plans with the
same numbers. Before the fit, a smaller transfer's time is capped at the time of any larger
one (a link never moves fewer bytes more slowly): a load spike on a small size would otherwise
flatten the line and report a link faster than it is (an emulated 20 Mbit/s measured as 216).
Through ``--net-emulate`` the communicator is the emulated one, so this measures
the emulated link (plus the real copy underneath it).

The default sizes (1 KiB to 512 KiB, four Allreduces each) move about 2.6 MB in all: 0.2 s at
100 Mbit/s on 2 ranks, a few milliseconds on a cluster network.
"""
from __future__ import annotations

import time

import numpy as np

from .emulated import AlphaBeta

SIZES = (1 << 10, 16 << 10, 128 << 10, 512 << 10)     # bytes
REPEATS = 3                                           # timed, after one untimed per size


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


def time_allreduces(comm, xp=np, sizes=SIZES, repeats=REPEATS, clock=time.perf_counter) -> list[float]:
    """This rank's fastest time of an Allreduce of each size (every rank must call this).
    Device buffers are timed to completion on the device (NCCL returns before it)."""
    from .. import backend
    buf = xp.zeros(max(sizes) // 4, dtype=np.float32)
    done = backend.synchronize if xp is not np else (lambda: None)
    fastest = []
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
        fastest.append(float(min(spent)))
    return fastest


def measure_link(comm, xp=np, sizes=SIZES, repeats=REPEATS, timer=None) -> AlphaBeta:
    """The agreed alpha-beta model of ``comm``'s link (P > 1; every rank calls this).
    ``timer(comm)`` replaces the timing (tests)."""
    mine = (timer or (lambda c: time_allreduces(c, xp, sizes, repeats)))(comm)
    every = np.asarray(comm.allgather(np.asarray(mine, dtype=np.float64)))
    fitted = None
    if comm.rank == 0:
        link = fit_alpha_beta(sizes, every.min(axis=0), comm.size)
        fitted = (link.alpha, 8.0 / link.beta)
    alpha, bandwidth = comm.bcast_obj(fitted, root=0)
    return AlphaBeta(alpha, bandwidth)


def describe(link: AlphaBeta) -> str:
    """'alpha 21.0 us, 0.98 Gbit/s' for a run's first line."""
    bw = 8.0 / link.beta
    bw_text = f"{bw / 1e9:.3g} Gbit/s" if bw >= 1e9 else f"{bw / 1e6:.3g} Mbit/s"
    return f"alpha {link.alpha * 1e6:.3g} us, {bw_text}"
