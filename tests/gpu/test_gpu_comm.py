"""GPU communicators under mpiexec -n 2 (scripts/gpu_check.sh runs them). Skipped without GPUs.

NCCL refuses two ranks on one device, so its test needs two GPUs; host staging works with
two ranks sharing one GPU.
"""
import numpy as np
import pytest

from dptrain import backend

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")]


def _train(comm_name):
    from dptrain import comm as comms
    from dptrain.comm.local import LocalCommunicator
    from dptrain.train import TrainConfig, Trainer
    world = comms.create("mpi")
    comm = LocalCommunicator() if comm_name == "local" else comms.create(comm_name, inner=world)
    cfg = TrainConfig(model="mlp", dataset="synthetic:1x8x8:300", dtype="float64", max_steps=10,
                      batch_size=32, device="gpu", allow_gpu_sharing=True, quiet=True, threads=1)
    t = Trainer(cfg, comm=comm)
    t.run()
    backend.use_device("cpu")
    backend.set_dtype("float32")
    return t.model.state_dict()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", ["staged", "nccl"])
def test_gpu_communicators_match_one_process(name):
    cupy = backend.cupy_module()
    if name == "nccl" and cupy.cuda.runtime.getDeviceCount() < 2:
        pytest.skip("NCCL needs a GPU per rank")
    got, ref = _train(name), _train("local")
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-9, atol=1e-12, err_msg=k)
