"""The compiled batch-norm kernels (nn/fused_native.py, nn/batchnorm_native.py) under
mpiexec with --sync-bn, float32: P ranks give the one-process parameters (within float32
rounding). (Not with empty ranks: float32 conv_direct.py fails on an empty batch, a bug of
its own; tests/native/test_batchnorm*.py check that both paths post the same reductions.)
Run with:
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi/test_native_batchnorm_mpi.py
"""
import numpy as np
import pytest

from dptrain import native
from dptrain.comm.local import LocalCommunicator
from test_data_parallel import train, world


@pytest.mark.mpi(min_size=2)
@pytest.mark.skipif(native.library() is None, reason="compiled CPU kernels not built")
@pytest.mark.parametrize("model,dataset", [("thesis-cnn", "synthetic:1x28x28:120"),
                                           ("vgg-cifar", "synthetic:3x16x16:48")])
def test_sync_bn_float32_rank_count_invariance(model, dataset):
    kw = dict(model=model, dataset=dataset, sync_bn=True, batch_size=24, max_steps=6,
              dtype="float32")
    a, b = train(world(), **kw), train(LocalCommunicator(), **kw)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=2e-3, atol=2e-4, err_msg=k)
