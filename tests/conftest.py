import numpy as np
import pytest

from dptrain import backend


@pytest.fixture(autouse=True)
def process_backend_restored():
    """The process default backend as it was before each test: a Trainer sets it from its
    configuration (--dtype, --device) as the command does, and a test may not leak that."""
    saved = backend.xp, backend.dtype, backend.kernels, backend.device_name
    yield
    backend.xp, backend.dtype, backend.kernels, backend.device_name = saved


@pytest.fixture
def float64():
    """Build layers and models in float64 (the process default) for the duration of a test."""
    backend.set_dtype("float64")
    return np.float64


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def host_launcher(tmp_path_factory):
    """The CUDA kernels compiled for the CPU (tests/host_cuda.py)."""
    import host_cuda
    if not host_cuda.available():
        pytest.skip("no g++ to compile the CUDA kernels for the CPU")
    return host_cuda.build(tmp_path_factory.mktemp("cuda_kernels"))


@pytest.fixture(params=["generic", "cuda-kernels"])
def kernel_path(request):
    """Run a test through the generic array code, then through the CUDA kernels' source
    (compiled for the CPU), the way a GPU run dispatches the layers."""
    from dptrain.nn import cuda_kernels
    if request.param == "generic":
        yield "generic"
        return
    build, used = request.getfixturevalue("host_launcher"), []

    def counting(dtype):
        launch = build(dtype)

        def counted(name, *args):
            used.append(name)
            return launch(name, *args)
        counted.__dict__.update(launch.__dict__)   # the preferred reduction block
        return counted
    from dptrain import backend
    cuda_kernels.host_launcher, before, backend.kernels = counting, backend.kernels, "all"
    try:
        yield "cuda-kernels"
    finally:
        cuda_kernels.host_launcher, backend.kernels = None, before
    assert used, "the test never reached a CUDA kernel"
