"""How many BLAS threads a rank uses when --threads is not given.

One, unless the environment says how many cores each rank owns: a Slurm job step started
with --cpus-per-task (SLURM_CPUS_PER_TASK), or OMP_NUM_THREADS set by the user. More BLAS
threads than free cores is far slower than one thread: each GEMM waits for its slowest
thread, and a thread that shares its core with another process runs a time slice late
(docs/performance.md measures 3x on the 2-core test machine). More cores are used by
running more ranks (mpiexec -n) or with --threads on a node that is yours alone.
"""
from __future__ import annotations

import os

SOURCES = ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK")


def default_threads(environ=os.environ) -> int:
    for var in SOURCES:
        value = environ.get(var, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1
