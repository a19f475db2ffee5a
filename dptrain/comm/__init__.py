"""Communicators, created by name, and gradient buckets.

    name   devices   when to use it
    ----   -------   --------------------------------------------------------------
    mpi    CPU       any run under mpiexec/srun; a single process works too (size 1)
    local     CPU    one process, no MPI at all (what `dptrain train` uses without a launcher)
    nccl      GPU    NCCL on a dedicated CUDA stream for device buffers, MPI (``inner``) for the
                     rest; the first choice with one GPU per rank (choice.py says which
                     transport each layout gets; multi-GPU NCCL not yet run on GPUs)
    cuda-mpi  GPU    MPI handed device buffers directly, when the library is CUDA-aware
                     (detected: cuda_aware.detect()); waits for the producing kernels first
    staged    GPU    an MPI communicator (``inner``) fed through pinned host buffers: the
                     fallback when the MPI cannot read device memory and NCCL is missing
    emulated  any    a real communicator (``inner``) whose operations are held until an
                     alpha-beta network model says they end: `--net-emulate bw=10Gbit,lat=20us`

``create("mpi")`` wraps MPI.COMM_WORLD; ``create("mpi", mpi_comm=c)`` any communicator.
"""
from .base import Communicator, Handle
from .buckets import Bucket, build_buckets
# Each transport module registers itself; this order is the order names are listed in.
from . import mpi, local, nccl, cuda_aware, staged, emulated  # noqa: E401,F401
from .registry import Transport, create, default, register, wrap
from .choice import RankCaps, choose


__all__ = ["Communicator", "Handle", "Bucket", "build_buckets", "create", "wrap", "default",
           "choose", "RankCaps", "Transport", "register"]
