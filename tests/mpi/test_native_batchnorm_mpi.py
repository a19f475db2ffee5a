"""The compiled batch-norm kernels (nn/fused_native.py, nn/batchnorm_native.py) under
mpiexec with --sync-bn, float32: P ranks give the one-process parameters (within float32
rounding). tests/native/test_batchnorm*.py check that both paths post the same reductions.
Run with:
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_native_batchnorm_mpi.py
"""
import numpy as np
import pytest

from dptrain import backend, native
from dptrain.comm.local import LocalCommunicator
from test_data_parallel import train, world


@pytest.mark.mpi(min_size=2)
@pytest.mark.skipif(native.library() is None, reason="compiled CPU kernels not built")
@pytest.mark.parametrize("model,dataset", [("thesis-cnn", "synthetic:1x28x28:120"),
                                           ("vgg-cifar", "synthetic:3x16x16:48")])
def test_sync_bn_float32_rank_count_invariance(monkeypatch, model, dataset):
    # the batch-norm kernels alone: Winograd F(4x4,3x3) rounds to about 1e-5 of a layer's
    # output whatever the rank count (its chunks hold other samples on 2 ranks), and 6 float32
    # steps at lr 0.05 amplify that past this tolerance (one process against itself with
    # another chunk size: 180x); tests/native/test_winograd.py checks those kernels
    monkeypatch.setattr(backend, "kernels", "cpu_batchnorm")
    kw = dict(model=model, dataset=dataset, sync_bn=True, batch_size=24, max_steps=6,
              dtype="float32")
    a, b = train(world(), **kw), train(LocalCommunicator(), **kw)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=2e-3, atol=2e-4, err_msg=k)
