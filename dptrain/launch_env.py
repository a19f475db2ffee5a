"""What an MPI launcher tells a process before MPI starts, and how to end the whole job.

Standard library only: the command line reads its rank here before importing numpy or
MPI, so that a Ctrl-C during start-up is reported once, by rank 0.
"""
from __future__ import annotations

import os
import shutil
import sys

_RANK_VARS = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK", "SLURM_PROCID")


def launched_under_mpi() -> bool:
    """True when an MPI launcher started this process (so importing MPI is worth it)."""
    keys = _RANK_VARS + ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")
    return any(k in os.environ for k in keys)


def launch_rank() -> int:
    """This process's rank as the launcher announced it (0 without one), before MPI starts."""
    for key in _RANK_VARS:
        if key in os.environ:
            try:
                return int(os.environ[key])
            except ValueError:
                pass
    return 0


def launch_size(include_slurm: bool = True) -> int:
    """How many ranks the launcher started (1 without one). ``include_slurm=False``: only what
    an MPI launcher announced (a Slurm allocation's task count alone starts no ranks)."""
    keys = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE")
    for key in keys + (("SLURM_NTASKS",) if include_slurm else ()):
        try:
            return int(os.environ[key])
        except (KeyError, ValueError):
            pass
    return 1


def abort_world(code: int) -> None:
    """End every rank of the job (MPI_Abort) if it has more than one rank; before MPI is up,
    join it first (mpi_start.py), else the others would wait for this rank for ever."""
    import sys
    MPI = sys.modules.get("mpi4py.MPI")
    if MPI is not None and MPI.Is_initialized() and not MPI.Is_finalized() \
            and MPI.COMM_WORLD.Get_size() > 1:
        sys.stderr.flush()
        MPI.COMM_WORLD.Abort(code)
    elif (MPI is None or not MPI.Is_initialized()) and launched_under_mpi() and launch_size() > 1:
        from .mpi_start import join_and_abort
        join_and_abort(code)


def find_mpiexec() -> str | None:
    """The mpiexec that belongs to this Python's MPI (the wheel's, next to the interpreter),
    else the one on PATH; None without one. Every command that starts ranks itself uses it."""
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return here if os.access(here, os.X_OK) else shutil.which("mpiexec")
