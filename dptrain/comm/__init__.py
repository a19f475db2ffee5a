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
from .choice import RankCaps, choose


def create(name: str = "mpi", **kwargs) -> Communicator:
    if name == "mpi":
        from .mpi import MPICommunicator
        return MPICommunicator(**kwargs)
    if name == "local":
        from .local import LocalCommunicator
        return LocalCommunicator()
    if name == "nccl":
        from .nccl import NCCLCommunicator
        return NCCLCommunicator(kwargs.pop("inner", None) or default())
    if name == "cuda-mpi":
        from .cuda_aware import CudaAwareMPICommunicator
        return CudaAwareMPICommunicator(**kwargs)
    if name == "staged":
        from .staged import HostStagedCommunicator
        return HostStagedCommunicator(kwargs.pop("inner", None) or default())
    if name == "emulated":
        from .emulated import AlphaBeta, EmulatedCommunicator, parse_spec
        spec = parse_spec(kwargs.pop("spec")) if "spec" in kwargs else {
            "bandwidth_bps": kwargs.pop("bandwidth_bps"), "latency_s": kwargs.pop("latency_s", 0.0)}
        inner = kwargs.pop("inner", None) or default()
        return EmulatedCommunicator(inner, AlphaBeta(spec["latency_s"], spec["bandwidth_bps"]), **kwargs)
    raise ValueError(f"unknown communicator {name!r} "
                     "(choose mpi, local, nccl, cuda-mpi, staged or emulated)")


def wrap(name: str, mpi_comm: Communicator) -> Communicator:
    """A multi-rank MPI communicator carried over the transport ``name`` (from choose)."""
    if name == "mpi":
        return mpi_comm
    if name == "cuda-mpi":
        return create("cuda-mpi", mpi_comm=mpi_comm.comm)
    return create(name, inner=mpi_comm)


def default() -> Communicator:
    """MPI.COMM_WORLD under an MPI launcher, else a one-process communicator."""
    from .mpi import launched_under_mpi
    return create("mpi" if launched_under_mpi() else "local")


__all__ = ["Communicator", "Handle", "Bucket", "build_buckets", "create", "choose", "RankCaps"]
