"""Which transport carries the gradients (--comm), chosen alike on every rank.

Each rank describes what it has (``RankCaps``: its device, whether its CuPy has NCCL,
whether its MPI reads device memory); the trainer gathers the descriptions and every rank
runs ``choose`` on the same list, so all ranks pick the same transport and fail alike.

    layout                                    auto gives    why
    every rank on the CPU                     mpi           host buffers
    one GPU per rank, NCCL on every rank      nccl          stream-ordered, no host waits
    ranks sharing a GPU, or NCCL missing      cuda-mpi      when every rank's MPI is CUDA-aware
                                              staged        otherwise (pinned host copies)
    some ranks on a GPU, others on the CPU    refused       their arithmetic differs

NCCL refuses two ranks of one communicator on the same device, so ``--comm nccl`` with
shared GPUs is refused up front rather than failing inside NCCL's initialisation.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass

from . import registry


def preferences() -> tuple[str, ...]:
    """What --comm accepts: auto, then every registered transport that runs over MPI."""
    return ("auto",) + registry.comm_choices()


def __getattr__(name: str):
    if name == "PREFERENCES":             # read live, so a transport registered later shows
        return preferences()
    raise AttributeError(name)


@dataclass(frozen=True)
class RankCaps:
    device: str               # "cpu", or "gpu:<identity>" (host and PCI bus of the device)
    nccl: bool = False        # this rank's CuPy has NCCL
    cuda_aware: bool = False  # this rank's MPI library reads device memory
    cuda_aware_how: str = ""  # how that was decided (for messages)
    device_reads: bool = False  # results are copied from a device (read a step late)

    @property
    def on_gpu(self) -> bool:
        return self.device.startswith("gpu")


def local_caps(device_name: str, device_identity: str | None = None) -> RankCaps:
    """What this rank has; ``device_identity`` tells devices apart across the job."""
    from .. import backend
    late = not backend.host_reads_are_free()
    if not device_name.startswith("gpu"):
        return RankCaps("cpu", device_reads=late)
    from .cuda_aware import detect
    from .nccl import available
    identity = device_identity or f"{socket.gethostname()}/{device_name}"
    ok, how = detect()
    return RankCaps(f"gpu:{identity}", available(), ok, how, device_reads=late)


def _ranks(ranks: list[int]) -> str:
    return ("rank " if len(ranks) == 1 else "ranks ") + ",".join(map(str, ranks))


def choose(preference: str, caps: list[RankCaps]) -> tuple[str, str]:
    """(transport, why) for ranks described by ``caps`` (index = rank); raises ValueError
    with the reason when ``preference`` cannot work for this layout."""
    if preference not in preferences():
        raise ValueError(f"--comm {preference}: choose {', '.join(preferences())}")
    gpu = [r for r, c in enumerate(caps) if c.on_gpu]
    cpu = [r for r, c in enumerate(caps) if not c.on_gpu]
    if gpu and cpu:
        raise ValueError(f"{_ranks(gpu)} run on a GPU and {_ranks(cpu)} on the CPU: give every "
                         "rank a GPU, or pass --device cpu")
    if not gpu:
        if preference in ("auto", "mpi"):
            return "mpi", "host buffers"
        if "cpu" in registry.get(preference).devices:
            return preference, "as asked"
        raise ValueError(f"--comm {preference} moves device buffers: it needs --device gpu")
    if preference != "auto" and "gpu" not in registry.get(preference).devices:
        gpu_ones = [t.name for t in registry.transports() if t.over_mpi and "gpu" in t.devices]
        raise ValueError(f"--comm {preference} cannot read GPU memory: use "
                         f"{', '.join(gpu_ones[:-1])} or {gpu_ones[-1]}")
    seen: dict[str, int] = {}
    shared = None                                   # (rank, rank, device) of a shared device
    for r, c in enumerate(caps):
        if c.device in seen and shared is None:
            shared = (seen[c.device], r, c.device[len("gpu:"):])
        seen.setdefault(c.device, r)
    no_nccl = [r for r, c in enumerate(caps) if not c.nccl]
    not_aware = [r for r, c in enumerate(caps) if not c.cuda_aware]
    if preference == "nccl":
        if no_nccl:
            raise ValueError(f"--comm nccl: the CuPy of {_ranks(no_nccl)} has no NCCL "
                             "(install cupy with NCCL, or use cuda-mpi or staged)")
        if shared:
            raise ValueError(f"--comm nccl: ranks {shared[0]} and {shared[1]} share the GPU "
                             f"{shared[2]}, and NCCL refuses two ranks on one device: run one "
                             "rank per GPU, or use --comm cuda-mpi or staged")
        return "nccl", "as asked"
    if preference == "cuda-mpi":
        if not_aware:
            how = caps[not_aware[0]].cuda_aware_how
            raise ValueError(f"--comm cuda-mpi: the MPI library of {_ranks(not_aware)} is not "
                             f"CUDA-aware ({how}); set DPTRAIN_CUDA_AWARE_MPI=1 if it is")
        return "cuda-mpi", "as asked"
    if preference != "auto":              # staged, or a transport registered beyond these
        return preference, "as asked"
    if not no_nccl and not shared:
        return "nccl", "one GPU per rank and NCCL on every rank"
    why = ("NCCL refuses ranks sharing a GPU" if shared and not no_nccl
           else f"no NCCL on {_ranks(no_nccl)}")
    if not not_aware:
        return "cuda-mpi", f"{why}; the MPI library is CUDA-aware"
    return "staged", f"{why}; the MPI library is not CUDA-aware"
