"""The CUDA kernels compiled for the CPU (g++), for tests: dptrain/nn/kernels_cuda/host.py,
with the small blocks (4 threads) that make the reductions' trees and chunk combines run on
test-sized inputs."""
from dptrain.nn.kernels_cuda.host import available, build  # noqa: F401
