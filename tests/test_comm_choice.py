"""Which gradient transport --comm gives for which layout of ranks and devices, NCCL and
CUDA-aware MPI detection (the GPU side needs no GPU here: availability is injected)."""
import ctypes

import pytest

from dptrain import comm as comms
from dptrain.comm import cuda_aware


from dptrain.comm.choice import RankCaps


def gpus(*devices, nccl=True, cuda=False):
    """One rank per entry of ``devices`` (the identity of its GPU)."""
    return [RankCaps(f"gpu:{d}", nccl, cuda, "injected") for d in devices]


def choose(pref, caps):
    return comms.choose(pref, caps)[0]


# Every combination of: devices per node for the ranks (own / shared), NCCL on every rank or
# not, CUDA-aware MPI on every rank or not; 2 nodes x 2 ranks.
OWN, SHARED = ["n0:0", "n0:1", "n1:0", "n1:1"], ["n0:0", "n0:0", "n1:0", "n1:0"]


@pytest.mark.parametrize("layout", ["own", "shared"])
@pytest.mark.parametrize("nccl", [True, False])
@pytest.mark.parametrize("cuda", [True, False])
def test_auto_for_every_layout(layout, nccl, cuda):
    caps = gpus(*(OWN if layout == "own" else SHARED), nccl=nccl, cuda=cuda)
    name, why = comms.choose("auto", caps)
    if layout == "own" and nccl:
        assert name == "nccl"
    else:
        assert name == ("cuda-mpi" if cuda else "staged")
        assert ("sharing a GPU" in why) == (layout == "shared" and nccl)
        assert ("no NCCL" in why) == (not nccl)
    assert name == choose("auto", caps)          # the same list gives the same answer


@pytest.mark.parametrize("layout", ["own", "shared"])
@pytest.mark.parametrize("nccl", [True, False])
@pytest.mark.parametrize("cuda", [True, False])
def test_explicit_choices_for_every_layout(layout, nccl, cuda):
    caps = gpus(*(OWN if layout == "own" else SHARED), nccl=nccl, cuda=cuda)
    assert choose("staged", caps) == "staged"
    if layout == "own" and nccl:
        assert choose("nccl", caps) == "nccl"
    else:
        with pytest.raises(ValueError, match="no NCCL" if not nccl else
                           "ranks 0 and 1 share the GPU n0:0, and NCCL refuses"):
            choose("nccl", caps)
    if cuda:
        assert choose("cuda-mpi", caps) == "cuda-mpi"
    else:
        with pytest.raises(ValueError, match="ranks 0,1,2,3 is not CUDA-aware"):
            choose("cuda-mpi", caps)
    with pytest.raises(ValueError, match="cannot read GPU memory"):
        choose("mpi", caps)


def test_one_rank_without_nccl_rules_nccl_out_for_all():
    caps = gpus("a:0", "b:0") + [RankCaps("gpu:c:0", nccl=False)]
    assert comms.choose("auto", caps) == ("staged", "no NCCL on rank 2; the MPI library is not CUDA-aware")
    with pytest.raises(ValueError, match="the CuPy of rank 2 has no NCCL"):
        choose("nccl", caps)


def test_cpu_runs_use_plain_mpi():
    cpus = [RankCaps("cpu")] * 2
    assert choose("auto", cpus) == "mpi" and choose("mpi", cpus) == "mpi"
    for pref in ("nccl", "cuda-mpi", "staged"):
        with pytest.raises(ValueError, match=f"--comm {pref} moves device buffers"):
            choose(pref, cpus)


def test_ranks_on_gpus_and_cpus_are_refused():
    with pytest.raises(ValueError, match="rank 0 run on a GPU and rank 1 on the CPU"):
        choose("auto", gpus("a:0") + [RankCaps("cpu")])


def test_nccl_available_imports_the_submodule(tmp_path, monkeypatch):
    """CuPy's real layout: ``import cupy`` does not import ``cupy.cuda.nccl``, so reading it
    as an attribute fails until the submodule is imported by name."""
    import sys
    from dptrain.comm import nccl
    pkg = tmp_path / "cupy"
    (pkg / "cuda").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import cuda\n")
    (pkg / "cuda" / "__init__.py").write_text("")
    (pkg / "cuda" / "nccl.py").write_text("available = True\n")
    for name in [m for m in sys.modules if m == "cupy" or m.startswith("cupy.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.syspath_prepend(str(tmp_path))
    import cupy
    assert not hasattr(cupy.cuda, "nccl")           # what made the old check answer False
    assert nccl.available() is True
    (pkg / "cuda" / "nccl.py").write_text("raise ImportError('libnccl.so.2 not found')\n")
    monkeypatch.delitem(sys.modules, "cupy.cuda.nccl")
    assert nccl.available() is False
    for name in [m for m in sys.modules if m == "cupy" or m.startswith("cupy.")]:
        monkeypatch.delitem(sys.modules, name)


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


def test_link_fit_is_not_flattened_by_a_load_spike_on_a_small_size():
    """Load only adds time; a spike on the smallest transfer must not make the link look
    faster than the larger transfers allow (before: a flat line, a Tbit/s link)."""
    from dptrain.comm import link_probe
    from dptrain.comm.emulated import AlphaBeta
    sizes = (1 << 10, 8 << 10, 32 << 10)
    true = AlphaBeta(0.0, 20e6)
    seconds = [true.allreduce(2, n) for n in sizes]
    seconds[0] += 0.02                                # the smallest size hit by a 20 ms stall
    got = link_probe.fit_alpha_beta(sizes, seconds, 2)
    assert 8 / got.beta <= 20e6 * 1.5     # 1.2x: the spike is capped at the 8 KiB time
