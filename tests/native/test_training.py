"""Training through the compiled CPU kernels (float32, every family the models reach): a resume
is bitwise, and the run differs from the NumPy code's in rounding only."""
import numpy as np
import pytest

from dptrain import backend, native
from dptrain.comm.local import LocalCommunicator
from dptrain.train import TrainConfig, Trainer

pytestmark = pytest.mark.skipif(native.library() is None,
                                reason=f"compiled CPU kernels: {native.status()}")

MODELS = {"thesis-cnn": "synthetic:1x28x28:48", "vgg-cifar": "synthetic:3x8x8:48"}


def run(model, **kw):
    cfg = dict(model=model, dataset=MODELS[model], dtype="float32", batch_size=16,
               optimizer="adam", lr=1e-3, quiet=True, threads=1)
    t = Trainer(TrainConfig(**{**cfg, **kw}), comm=LocalCommunicator())
    t.run()
    return t


@pytest.mark.parametrize("model", sorted(MODELS))
def test_resume_through_the_compiled_kernels_is_bitwise(tmp_path, model):
    straight = run(model, epochs=2).model.state_dict()
    d = str(tmp_path / "ck")
    run(model, epochs=1, checkpoint_dir=d)
    resumed = run(model, epochs=2, checkpoint_dir=d, resume=True)
    assert resumed.resumed_from is not None
    for k, v in straight.items():
        np.testing.assert_array_equal(resumed.model.state_dict()[k], v, err_msg=k)


@pytest.mark.parametrize("model", sorted(MODELS))
def test_the_compiled_kernels_change_rounding_only(monkeypatch, model):
    compiled = run(model, epochs=1).model.state_dict()
    monkeypatch.setattr(backend, "kernels", "generic")
    numpy_code = run(model, epochs=1).model.state_dict()
    assert any(not np.array_equal(compiled[k], v) for k, v in numpy_code.items()), \
        "the compiled kernels did not run"
    for k, v in numpy_code.items():
        np.testing.assert_allclose(compiled[k], v, rtol=2e-3, atol=2e-4, err_msg=k)


@pytest.mark.parametrize("kernels", ["auto", "generic"])
def test_a_rank_with_no_samples_gets_zero_gradients(monkeypatch, kernels):
    """A rank whose slice of the global batch is empty (more ranks than samples in a last
    batch) runs forward and backward on 0 samples: the first layer's weight gradient came
    from reshape(0, C, -1), which NumPy refuses."""
    from dptrain import models
    monkeypatch.setattr(backend, "kernels", kernels)
    model = models.get("thesis-cnn", seed=0)
    with np.errstate(invalid="ignore", divide="ignore"):   # local statistics of 0 samples
        out = model.forward(np.zeros((0, 1, 28, 28), np.float32), True)
        model.backward(np.zeros_like(out))
    assert out.shape == (0, 10)
    np.testing.assert_array_equal(model.layers[0].grads["W"], 0)
