"""--sync-bn through the CUDA kernels' source (compiled for the CPU, as tests/nn runs it):
each rank's batch norm takes its statistics in one pass and merges them over the ranks with
the same two reductions as the array code, so P ranks give the one-process parameters, ranks
with empty slices included. Run under mpiexec -n 2 and -n 4 (see test_data_parallel.py).
"""
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.nn import cuda_kernels
from test_data_parallel import assert_same, train, world


@pytest.fixture
def through_the_kernels(host_launcher):
    cuda_kernels.host_launcher = host_launcher
    try:
        yield
    finally:
        cuda_kernels.host_launcher = None


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("batch,dataset,steps", [(24, "synthetic:1x28x28:120", 4),
                                                 (22, "synthetic:1x28x28:120", 4),
                                                 (24, "synthetic:1x28x28:151", 8)])  # empty ranks
def test_thesis_cnn_sync_bn_through_the_kernels_rank_count_invariance(through_the_kernels, batch,
                                                                      dataset, steps):
    kw = dict(model="thesis-cnn", dataset=dataset, sync_bn=True, batch_size=batch,
              max_steps=steps)
    assert_same(train(world(), **kw), train(LocalCommunicator(), **kw))
