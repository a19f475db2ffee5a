"""Which gradient transport --comm gives on which device, and CUDA-aware MPI detection
(the GPU side needs no GPU here: availability is injected)."""
import ctypes

import pytest

from dptrain import comm as comms
from dptrain.comm import cuda_aware


def choose(pref, device, nccl=False, cuda=False):
    return comms.choose(pref, device, nccl_available=lambda: nccl,
                        cuda_aware=lambda: (cuda, "injected"))


@pytest.mark.parametrize("nccl,cuda,expected", [(True, True, "nccl"), (True, False, "nccl"),
                                                (False, True, "cuda-mpi"), (False, False, "staged")])
def test_auto_prefers_nccl_then_cuda_aware_mpi_then_staging(nccl, cuda, expected):
    assert choose("auto", "gpu:0", nccl, cuda) == expected


def test_cpu_runs_use_plain_mpi():
    assert choose("auto", "cpu", True, True) == "mpi"
    assert choose("mpi", "cpu") == "mpi"
    for pref in ("nccl", "cuda-mpi", "staged"):
        with pytest.raises(ValueError, match=f"--comm {pref} moves device buffers"):
            choose(pref, "cpu")


def test_explicit_choices_on_a_gpu_are_checked():
    assert choose("staged", "gpu:1") == "staged"
    assert choose("nccl", "gpu:0", nccl=True) == "nccl"
    assert choose("cuda-mpi", "gpu:0", cuda=True) == "cuda-mpi"
    with pytest.raises(ValueError, match="this CuPy has no NCCL"):
        choose("nccl", "gpu:0")
    with pytest.raises(ValueError, match="not CUDA-aware"):
        choose("cuda-mpi", "gpu:0")
    with pytest.raises(ValueError, match="cannot read GPU memory"):
        choose("mpi", "gpu:0")


class FakeLibrary:
    """An MPI library's exported query functions, as ctypes would find them."""

    def __init__(self, **functions):
        for name, f in functions.items():
            setattr(self, name, f)


def test_detection_asks_the_library_first():
    yes = FakeLibrary(MPIX_Query_cuda_support=lambda: 1)
    assert cuda_aware.detect(env={}, library=yes) == (True, "MPIX_Query_cuda_support()")
    no = FakeLibrary(MPIX_Query_cuda_support=lambda: 0)
    assert cuda_aware.detect(env={"MV2_USE_CUDA": "1"}, library=no)[0] is False

    def gpu_query(kind, flag):
        ctypes.cast(flag, ctypes.POINTER(ctypes.c_int))[0] = int(kind == cuda_aware.MPIX_GPU_SUPPORT_CUDA)
        return 0
    assert cuda_aware.detect(env={}, library=FakeLibrary(MPIX_GPU_query_support=gpu_query)) == \
        (True, "MPIX_GPU_query_support(CUDA)")


def test_detection_falls_back_to_vendor_switches_and_can_be_forced():
    bare = FakeLibrary()
    assert cuda_aware.detect(env={}, library=bare)[0] is False
    assert cuda_aware.detect(env={"MPICH_GPU_SUPPORT_ENABLED": "1"}, library=bare) == \
        (True, "MPICH_GPU_SUPPORT_ENABLED=1")
    assert cuda_aware.detect(env={"MV2_USE_CUDA": "0"}, library=bare)[0] is False
    yes = FakeLibrary(MPIX_Query_cuda_support=lambda: 1)
    assert cuda_aware.detect(env={"DPTRAIN_CUDA_AWARE_MPI": "0"}, library=yes) == \
        (False, "DPTRAIN_CUDA_AWARE_MPI=0")


def test_detection_on_this_machines_mpi_answers():
    """The real library (MPICH from PyPI here, built without CUDA) is asked, not guessed."""
    supported, how = cuda_aware.detect(env={})
    assert how in ("MPIX_Query_cuda_support()", "MPIX_GPU_query_support(CUDA)") or "no" in how
    assert isinstance(supported, bool)
