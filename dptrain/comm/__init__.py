"""Communicators, created by name, and gradient buckets.

    name   devices   when to use it
    ----   -------   --------------------------------------------------------------
    mpi    CPU       any run under mpiexec/srun; a single process works too (size 1)
    local  CPU       one process, no MPI at all (what `dptrain train` uses without a launcher)

``create("mpi")`` wraps MPI.COMM_WORLD; ``create("mpi", mpi_comm=c)`` any communicator.
"""
from .base import Communicator, Handle
from .buckets import Bucket, build_buckets


def create(name: str = "mpi", **kwargs) -> Communicator:
    if name == "mpi":
        from .mpi import MPICommunicator
        return MPICommunicator(**kwargs)
    if name == "local":
        from .local import LocalCommunicator
        return LocalCommunicator()
    raise ValueError(f"unknown communicator {name!r} (choose mpi or local)")


def default() -> Communicator:
    """MPI.COMM_WORLD under an MPI launcher, else a one-process communicator."""
    from .mpi import launched_under_mpi
    return create("mpi" if launched_under_mpi() else "local")


__all__ = ["Communicator", "Handle", "Bucket", "build_buckets", "create"]
