"""Data parallelism under mpiexec (-n 2 and -n 4): the guarantees of docs/guarantees.md.

Each test runs the P-rank training and, in the same process, the one-process reference
(a LocalCommunicator), then compares parameters. Tests taking ``timing`` run twice: with host
results, and with device-like results whose readiness differs per rank (as on GPUs). Run with:
    mpiexec -n 2 python -m pytest --with-mpi tests/mpi
"""
import numpy as np
import pytest

from dptrain import backend, comm as comms
from dptrain.backend import Backend
from dptrain.comm import order_check
from dptrain.comm.local import LocalCommunicator
from dptrain.train import TrainConfig, Trainer


def world():
    """COMM_WORLD, order-checked as the suite asks (tests/mpi/conftest.py)."""
    return order_check.checked(comms.create("mpi"), order_check.mode_from_env())


def train(comm, **overrides):
    cfg = dict(model="mlp", dataset="synthetic:1x8x8:300", dtype="float64", max_steps=10,
               batch_size=32, optimizer="momentum", lr=0.05, quiet=True, threads=1)
    cfg.update(overrides)
    trainer = Trainer(TrainConfig(**cfg), comm=comm)
    trainer.run()
    return trainer.model.state_dict()


def assert_same(a, b, rtol=1e-9):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=1e-12, err_msg=k)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("batch", [32, 30])          # 30: not divisible by 4 ranks
def test_mlp_rank_count_invariance(batch, timing):
    assert_same(train(world(), batch_size=batch), train(LocalCommunicator(), batch_size=batch))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("batch", [24, 22])
def test_thesis_cnn_sync_bn_dropout_rank_count_invariance(batch, timing):
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", sync_bn=True, batch_size=batch)
    assert_same(train(world(), **kw), train(LocalCommunicator(), **kw))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap"])
@pytest.mark.parametrize("model,dataset,sync_bn", [
    ("mlp", "synthetic:1x8x8:151", False),          # empty ranks skip the model
    ("mlp", "synthetic:1x8x8:151", True),           # empty ranks run the empty batch through it
    ("thesis-cnn", "synthetic:1x28x28:151", True)])
def test_last_batch_smaller_than_rank_count(model, dataset, sync_bn, sync):
    """121 training samples, batch 24: each epoch's last batch holds one sample, so every rank
    but one has an empty slice and must still join every reduction (batch norm's included)."""
    kw = dict(model=model, dataset=dataset, sync_bn=sync_bn, batch_size=24, max_steps=8)
    assert_same(train(world(), sync=sync, **kw), train(LocalCommunicator(), **kw))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync,progress", [("blocking", "thread"), ("overlap", "thread"),
                                           ("overlap", "poll"), ("overlap", "priority"),
                                           ("overlap-fc", "priority")])
def test_schedules_give_the_same_parameters(sync, progress, timing):
    # small buckets: several reductions in flight at once
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", sync_bn=True, batch_size=24,
              bucket_mb=0.05, optimizer="adam", lr=1e-3)
    reference = train(LocalCommunicator(), **kw)
    assert_same(train(world(), sync=sync, comm_progress=progress, **kw), reference)


@pytest.mark.mpi(min_size=2)
def test_communicator_operations():
    c = world()
    buf = np.full(5, float(c.rank))
    c.allreduce(buf)
    np.testing.assert_array_equal(buf, c.size * (c.size - 1) / 2)     # sum of ranks
    buf = np.full(3, c.rank + 1.0, dtype=np.float32)
    c.iallreduce(buf).wait()
    np.testing.assert_array_equal(buf, c.size * (c.size + 1) / 2)
    gathered = c.allgather(np.array([c.rank, 10 * c.rank]))
    np.testing.assert_array_equal(gathered[:, 1], 10 * np.arange(c.size))
    b = np.arange(4.0) if c.rank == 0 else np.zeros(4)
    c.bcast(b, root=0)
    np.testing.assert_array_equal(b, np.arange(4.0))
    assert c.allreduce_obj(1) == c.size and c.bcast_obj({"r": c.rank}) == {"r": 0}
    assert 0 <= c.local_rank < c.local_size <= c.size
    d = c.dup()
    x = np.ones(2)
    d.allreduce(x)
    assert x[0] == c.size
    c.barrier()


@pytest.mark.mpi(min_size=2)
def test_parameters_broadcast_from_rank_zero():
    from dptrain import models, parallel
    c = world()
    model = models.get("mlp", seed=100 + c.rank)          # deliberately different replicas
    parallel.DataParallel(model, c, schedule="blocking").broadcast_parameters()
    for name, p in model.named_params():
        gathered = c.allgather(p)
        assert all(np.array_equal(gathered[0], g) for g in gathered), name


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_accumulation_equals_one_large_batch(sync, timing):
    """--accumulate 2 of a 64-sample batch (2 x 32) gives the parameters of one batch of 64."""
    kw = dict(batch_size=64, sync=sync, dataset="synthetic:1x8x8:400", optimizer="adam", lr=1e-3)
    assert_same(train(world(), accumulate=2, **kw), train(LocalCommunicator(), **kw))
    assert_same(train(world(), accumulate=3, **kw), train(world(), **kw))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_float16_gradients_within_tolerance(sync):
    """Compressed Allreduce: 10 SGD steps stay within float16 rounding of the float32 run."""
    kw = dict(dtype="float32", sync=sync, optimizer="sgd", lr=0.05)
    exact, compressed = train(world(), **kw), train(world(), grad_dtype="float16", **kw)
    for k in exact:
        scale = np.abs(exact[k]).max()
        # each step's gradient is rounded to 11 significant bits; 10 steps of lr 0.05
        assert np.abs(compressed[k] - exact[k]).max() <= 2e-3 * scale + 1e-4, k
    assert any(not np.array_equal(compressed[k], exact[k]) for k in exact)   # it did round


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync,progress", [("blocking", "thread"), ("overlap", "thread"),
                                           ("overlap", "poll")])
def test_resume_after_an_epoch_is_bitwise_identical(sync, progress, tmp_path_factory, timing):
    c = world()
    # every rank must read the same directory: rank 0 chooses it
    d = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", sync_bn=True, batch_size=24,
              optimizer="adam", lr=1e-3, sync=sync, comm_progress=progress, max_steps=None)
    straight = train(c, epochs=3, **kw)
    train(c, epochs=1, checkpoint_dir=d, **kw)
    resumed = train(c, epochs=3, checkpoint_dir=d, resume=True, **kw)
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sampler,extra", [("obs", {"obs_recompute_every": 1}), ("as", {}),
                                           ("as", {"as_weighting": "none", "as_beta": 1})])
def test_adaptive_samplers_rank_count_invariance(sampler, extra, timing):
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:150", sync_bn=True, batch_size=24,
              sampler=sampler, epochs=2, max_steps=None, **extra)
    assert_same(train(world(), **kw), train(LocalCommunicator(), **kw))


def _wide_mlp(seed=0):
    from dptrain import models, nn
    layers = [nn.Flatten(), nn.Dense(64, 512), nn.ReLU(), nn.Dense(512, 512), nn.ReLU(),
              nn.Dense(512, 10, init="glorot")]
    return models.Sequential(layers, (1, 8, 8), seed=seed, backend=Backend(np, np.float64))


def _run_dp(comm, schedule, fc_replicate="auto", progress="thread", steps=10, batch=16):
    from dptrain import data, nn, optim, parallel
    from dptrain.nn import BatchContext
    model = _wide_mlp()
    opt = optim.get("adam", model, lr=1e-3)
    loss = nn.SoftmaxCrossEntropy()
    dp = parallel.DataParallel(model, comm, schedule=schedule, bucket_mb=0.1, progress=progress,
                               fc_replicate=fc_replicate, global_batch=batch)
    rng = np.random.default_rng(7)
    x_all, y_all = rng.standard_normal((batch * steps, 1, 8, 8)), rng.integers(0, 10, batch * steps)
    for step in range(steps):
        ids = np.arange(step * batch, (step + 1) * batch)
        local = data.rank_slice(ids, comm.rank, comm.size)
        dp.train_step(x_all[local], y_all[local], loss, opt, global_batch=batch,
                      context=BatchContext(local, step))
    dp.close()
    return model.state_dict(), dp


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("progress", ["thread", "poll"])
@pytest.mark.parametrize("batch", [16, 15])
def test_overlap_fc_equals_blocking_on_a_wide_mlp(progress, batch):
    blocking, _ = _run_dp(world(), "blocking", batch=batch)
    fc, dp = _run_dp(world(), "overlap-fc", progress=progress, batch=batch)
    assert dp.fc is not None and dp.fc.layers == [1, 3]        # 16 x (64 + 512) < 64 x 512, ...
    assert_same(fc, blocking)


@pytest.mark.mpi(min_size=2)
def test_overlap_fc_on_thesis_cnn_equals_blocking(timing):
    kw = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", sync_bn=True, batch_size=24)
    assert_same(train(world(), sync="overlap-fc", fc_replicate="all", **kw),
                train(world(), sync="blocking", **kw))


@pytest.mark.mpi(min_size=2)
def test_overlap_fc_cuts_bytes_by_the_analytic_factor():
    """mlp-wide, global batch 64: bytes sent per step, blocking vs overlap-fc, as predicted."""
    from dptrain import models, nn, optim, parallel
    from dptrain.parallel.fc_replication import choose_layers
    c = world()
    p, gb = c.size, 64
    sent = {}
    for schedule in ("blocking", "overlap-fc"):
        model = models.get("mlp-wide")
        dp = parallel.DataParallel(model, c, schedule=schedule, global_batch=gb)
        opt, loss = optim.get("sgd", model), nn.SoftmaxCrossEntropy()
        rng = np.random.default_rng(c.rank)
        n_local = len(np.array_split(np.arange(gb), p)[c.rank])
        for _ in range(3):
            dp.train_step(rng.random((n_local, 1, 28, 28), dtype=np.float32),
                          rng.integers(0, 10, n_local), loss, opt, global_batch=gb)
        dp.close()
        sent[schedule] = dp.stats.bytes / dp.stats.steps
    model = models.get("mlp-wide")
    fc = choose_layers(model, "auto", gb)
    assert fc == [1, 3]
    rows = -(-gb // p)
    params = {i: sum(v.size for v in layer.params.values()) for i, layer in enumerate(model.layers)}
    allreduce = lambda n: 2 * (p - 1) / p * 4 * n                     # noqa: E731
    expected_blocking = allreduce(sum(params.values()))
    expected_fc = allreduce(sum(n for i, n in params.items() if i not in fc)) + sum(
        (p - 1) * rows * (model.layers[i].n_in + model.layers[i].n_out) * 4 for i in fc)
    assert sent["blocking"] == pytest.approx(expected_blocking, rel=1e-6)
    assert sent["overlap-fc"] == pytest.approx(expected_fc, rel=1e-6)
    factor = sent["blocking"] / sent["overlap-fc"]
    assert factor == pytest.approx(expected_blocking / expected_fc, rel=0.05)


@pytest.mark.mpi(min_size=2)
def test_host_staged_communicator_matches_mpi_on_host_arrays():
    """The staging layer passes host arrays straight to MPI (device arrays need a GPU)."""
    from dptrain import comm as comms
    c = comms.create("staged", inner=world())
    buf = np.full(4, float(c.rank + 1))
    c.allreduce(buf)
    np.testing.assert_array_equal(buf, c.size * (c.size + 1) / 2)
    h = c.iallreduce(buf)
    h.wait()
    np.testing.assert_array_equal(buf, c.size * c.size * (c.size + 1) / 2)
    out = np.zeros((c.size, 2))
    c.iallgather(np.array([c.rank, 1.0]), out).wait()
    np.testing.assert_array_equal(out[:, 0], np.arange(c.size))
    b = np.arange(3.0) if c.rank == 0 else np.zeros(3)
    c.bcast(b)
    np.testing.assert_array_equal(b, np.arange(3.0))
    kw = dict(model="mlp", dataset="synthetic:1x8x8:300")
    for sync in ("blocking", "overlap", "overlap-fc"):
        assert_same(train(comms.create("staged", inner=world()), sync=sync, **kw),
                    train(LocalCommunicator(), **kw))


@pytest.mark.mpi(min_size=2)
def test_cuda_aware_communicator_matches_mpi_on_host_arrays():
    """The CUDA-aware communicator is MPI itself for host arrays (device ones need a GPU)."""
    c = comms.create("cuda-mpi")
    buf = np.full(3, float(c.rank))
    c.iallreduce(buf).wait()
    np.testing.assert_array_equal(buf, c.size * (c.size - 1) / 2)
    out = np.zeros((c.size, 1))
    c.iallgather(np.array([float(c.rank)]), out).wait()
    np.testing.assert_array_equal(out[:, 0], np.arange(c.size))
    kw = dict(model="mlp", dataset="synthetic:1x8x8:300")
    for sync in ("blocking", "overlap", "overlap-fc"):
        assert_same(train(comms.create("cuda-mpi"), sync=sync, **kw), train(LocalCommunicator(), **kw))


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_device_style_late_reads_fail_every_rank_at_one_step_with_a_finite_checkpoint(
        sync, tmp_path_factory, monkeypatch):
    """With results read on the host one or two steps late (as on a GPU), a diverging run
    still ends on every rank at the same step, and no diverged step is ever checkpointed."""
    from dptrain.errors import TrainingFailure
    from dptrain.train import checkpoint
    import sys
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parents[1] / "train"))
    from test_step_pipeline import LaggingCopy
    monkeypatch.setattr(backend, "HostCopy", LaggingCopy)
    monkeypatch.setattr(backend, "host_reads_are_free", lambda: False)
    c = world()
    d = c.bcast_obj(str(tmp_path_factory.mktemp("ck")) if c.rank == 0 else None)
    with pytest.raises(TrainingFailure, match=r"at step (\d+)") as failure:
        train(c, optimizer="sgd", lr=1e30, epochs=2, max_steps=None, sync=sync,
              checkpoint_dir=d, checkpoint_every="1")
    message = str(failure.value)
    assert len({c.bcast_obj(message, root=r) for r in range(c.size)}) == 1, message
    failed_at = int(__import__("re").search(r"at step (\d+)", message).group(1))
    c.barrier()
    saved = checkpoint.list_checkpoints(d)
    assert saved, message
    ck = checkpoint.read(saved[-1])
    assert ck["meta"]["step"] <= failed_at
    assert all(np.isfinite(v).all() for v in ck["model"].values())
    print(f"[{sync}] {message}; last checkpoint at step {ck['meta']['step']}")
