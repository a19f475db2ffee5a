"""Node-local rank -> GPU, checked with a stand-in for CuPy's CUDA runtime (no GPU here)."""
import sys
import types

import numpy as np
import pytest

from dptrain import backend


@pytest.fixture
def fake_cupy(monkeypatch):
    """A cupy module whose runtime sees ``visible`` devices (as CUDA_VISIBLE_DEVICES would
    leave them) and that records which device each process selects."""
    used = []

    class Device:
        def __init__(self, i=0):
            self.id = i

        def use(self):
            used.append(self.id)

    cupy = types.ModuleType("cupy")
    cupy.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: cupy.visible),
                                      Device=Device)
    cupy.visible = 2
    cupy.used = used
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    yield cupy
    backend.xp, backend.device_name = np, "cpu"


@pytest.mark.parametrize("local_rank,local_size,expected", [(0, 1, 0), (1, 2, 1), (0, 2, 0)])
def test_each_node_local_rank_takes_its_own_gpu(fake_cupy, local_rank, local_size, expected):
    assert backend.use_device("gpu", local_rank, local_size) == f"gpu:{expected}"
    assert fake_cupy.used == [expected] and backend.xp is fake_cupy


def test_more_ranks_than_gpus_is_refused_unless_sharing_is_allowed(fake_cupy):
    with pytest.raises(backend.DeviceError, match="3 ranks on this node but 2 visible GPU"):
        backend.use_device("gpu", 2, 3)
    assert backend.xp is np and fake_cupy.used == []
    assert backend.use_device("gpu", 2, 3, allow_sharing=True) == "gpu:0"   # 2 mod 2


def test_auto_takes_the_gpu_when_one_is_visible(fake_cupy):
    assert backend.use_device("auto", 0, 1) == "gpu:0"
    fake_cupy.visible = 0
    assert backend.use_device("auto", 0, 1) == "cpu" and backend.xp is np


def test_the_trainer_reports_too_many_ranks_per_gpu_as_bad_input(fake_cupy):
    from dptrain.errors import UsageError
    from dptrain.train import TrainConfig
    from dptrain.train.setup import setup_backend
    fake_cupy.visible = 1
    with pytest.raises(UsageError, match="pass --allow-gpu-sharing"):
        setup_backend(TrainConfig(device="gpu"), local_rank=1, local_size=2)
