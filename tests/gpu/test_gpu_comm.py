"""GPU communicators under mpiexec -n 2 (scripts/gpu_check.sh runs them). Skipped without GPUs.

Every transport with every schedule must give one process's parameters. NCCL refuses two
ranks on one device, so its test needs two GPUs; host staging and CUDA-aware MPI work with
two ranks sharing one GPU (--allow-gpu-sharing).
"""
import numpy as np
import pytest

from dptrain import backend

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not backend.gpu_available(), reason="needs CuPy and a CUDA GPU")]


def _train(transport, sync="blocking"):
    from dptrain import comm as comms
    from dptrain.comm.local import LocalCommunicator
    from dptrain.train import TrainConfig, Trainer
    world = comms.create("mpi")
    comm = LocalCommunicator() if transport == "local" else world
    cfg = TrainConfig(model="thesis-cnn", dataset="synthetic:1x28x28:300", dtype="float64",
                      max_steps=10, batch_size=32, device="gpu", allow_gpu_sharing=True,
                      quiet=True, threads=1, sync=sync, comm="auto" if transport == "local" else transport,
                      bucket_mb=0.05)
    t = Trainer(cfg, comm=comm)
    assert transport == "local" or t.transport == transport
    t.run()
    backend.use_device("cpu")
    backend.set_dtype("float32")
    return t.model.state_dict()


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap", "overlap-fc"])
@pytest.mark.parametrize("transport", ["staged", "cuda-mpi", "nccl"])
def test_gpu_transports_match_one_process(transport, sync):
    from dptrain.comm import cuda_aware, nccl
    cupy = backend.cupy_module()
    if transport == "nccl" and (cupy.cuda.runtime.getDeviceCount() < 2 or not nccl.available()):
        pytest.skip("NCCL needs CuPy's NCCL and a GPU per rank")
    if transport == "cuda-mpi" and not cuda_aware.detect()[0]:
        pytest.skip(f"the MPI library is not CUDA-aware ({cuda_aware.detect()[1]})")
    got, ref = _train(transport, sync), _train("local")
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-9, atol=1e-12, err_msg=k)
