"""The readings of Adaptive Sampling in training: flags, refusals, resume, the collapse of
the per-sample counter, and the mini-batch cost measure of scripts/reproduce_sampling.py."""
import contextlib
import json
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.data import rank_slice
from dptrain.data.samplers import ASSampler
from dptrain.errors import TrainingFailure
from dptrain.train import TrainConfig, Trainer, checkpoint
from dptrain.train.sampler_feed import SamplerFeed
from test_cli import assert_usage_error, dptrain

BASE = dict(model="thesis-cnn", dataset="synthetic:1x28x28:120", dtype="float64", batch_size=24,
            optimizer="adam", lr=1e-3, quiet=True, threads=1, sampler="as", as_beta=2)


def run(**kw):
    t = Trainer(TrainConfig(**{**BASE, **kw}), comm=LocalCommunicator())
    t.run()
    return t.model.state_dict(), t


def run_to_overflow(**kw):
    """A run whose parameters stay finite but whose model overflows in the final evaluation:
    it ends as a diverged run (train/epoch_report.py) after its last step."""
    t = Trainer(TrainConfig(**{**BASE, **kw}), comm=LocalCommunicator())
    with pytest.raises(TrainingFailure, match="the test loss is nan"):
        t.run()
    return t.model.state_dict(), t


@pytest.mark.parametrize("flags,named", [
    (["--as-bound", "sqrt"], "--as-bound"),
    (["--as-refresh", "all"], "--as-refresh"),
    (["--as-counter", "epochs"], "--as-counter"),
    (["--as-refresh-per-bin", "-1"], "--as-refresh-per-bin"),
    (["--as-refresh-per-bin", "1.5"], "--as-refresh-per-bin"),
    (["--as-refresh", "every-bin", "--as-counter", "samples"], "--as-counter batches")])
def test_bad_readings_exit_2(flags, named):
    assert_usage_error(dptrain("train", "--model", "mlp", "--epochs", 1, "--quiet", "--sampler", "as",
                               *flags), named)


def test_the_readings_are_in_help():
    out = dptrain("train", "--help").stdout
    for flag in ("--as-bound", "--as-refresh", "--as-refresh-per-bin", "--as-counter"):
        assert flag in out


@pytest.mark.parametrize("reading", [
    dict(as_bound="eq67"),
    dict(as_refresh="every-bin", as_refresh_per_bin=3),
    dict(as_bound="eq67", as_refresh="every-bin", as_beta=3, sync="overlap"),
    dict(as_counter="samples", as_beta=7)], ids=lambda r: ",".join(f"{k}={v}" for k, v in r.items()))
def test_resume_with_each_reading_is_bitwise_identical(tmp_path, reading):
    straight, _ = run(epochs=3, **reading)
    d = str(tmp_path / "ck")
    run(epochs=3, max_steps=7, checkpoint_dir=d, checkpoint_every="7", **reading)   # mid-epoch 2
    resumed, t = run(epochs=3, checkpoint_dir=d, resume=True, **reading)
    assert t.resumed_from.name == "ckpt-000000007.npz"
    for k in straight:
        np.testing.assert_array_equal(resumed[k], straight[k], err_msg=k)


def test_a_checkpoint_of_another_reading_is_refused(tmp_path):
    d = str(tmp_path / "ck")
    run(epochs=1, checkpoint_dir=d)
    with pytest.raises(Exception, match="as_bound='listing' \\(now 'eq67'\\)"):
        run(epochs=2, checkpoint_dir=d, resume=True, as_bound="eq67")


def test_a_checkpoint_from_before_the_readings_resumes_as_the_listing():
    config = {k: v for k, v in TrainConfig(**BASE).__dict__.items() if k not in checkpoint.ADDED_KEYS}
    checkpoint.check_compatible({"path": "old", "meta": {"config": config}},
                                TrainConfig(**BASE).__dict__)
    with pytest.raises(checkpoint.CheckpointError, match="as_bound"):
        checkpoint.check_compatible({"path": "old", "meta": {"config": config}},
                                    TrainConfig(**BASE, as_bound="eq67").__dict__)


def test_the_per_sample_counter_collapses_p_in_training():
    """The listing read literally (P re-estimated every 10 samples) on real digits: within
    one epoch P piles onto a few classes (uniform: 0.1 each); counted in mini-batches it stays near uniform."""
    kw = dict(dataset="mnist5k", dtype="float32", batch_size=64, optimizer="adadelta", lr=1.0,
              epochs=1, as_beta=10)
    largest = {c: run(as_counter=c, **kw)[1].sampler.P.max() for c in ("batches", "samples")}
    assert largest["batches"] < 0.2
    assert largest["samples"] > 0.3              # 0.37 here; 0.65 after two epochs


def test_the_mini_batch_measure_is_the_mean_of_the_logged_batch_losses(tmp_path):
    sys.path.insert(0, str(Path(__file__).parents[2] / "scripts"))
    import reproduce_sampling
    metrics = tmp_path / "m.jsonl"
    # 96 training samples, batch 24: every batch full, so the epoch line's mean agrees too
    run(epochs=2, log_every=1, eval_train=True, metrics_out=str(metrics), as_weighting="none")
    lines = [json.loads(x) for x in metrics.read_text().splitlines()]
    curve = reproduce_sampling.curves(lines)
    assert [c["epoch"] for c in curve] == [1, 2]
    for c in curve:
        logged = [r["loss"] for r in lines if r["type"] == "step" and r["epoch"] == c["epoch"]]
        assert len(logged) == 4
        assert c["minibatch"] == pytest.approx(np.mean(logged), rel=1e-12)
        epoch_line = next(r for r in lines if r["type"] == "epoch" and r["epoch"] == c["epoch"])
        assert c["minibatch"] == pytest.approx(epoch_line["loss"], rel=1e-12)
        train_eval = next(r for r in lines if r["type"] == "eval" and r["split"] == "train"
                          and r["epoch"] == c["epoch"])
        assert c["train_set"] == train_eval["loss"]


def test_beta_counts_global_batches_under_accumulate():
    """The sampler observes each global batch once, whatever --accumulate cuts it into."""
    _, t = run(epochs=1, accumulate=3)
    assert t.sampler.t == t.step == 4                   # 96 training samples, batch 24


def test_every_bin_probe_on_more_ranks_than_probed_samples():
    """Three probed samples (three bins, one each) on four ranks: shares of 1, 1, 1 and 0.
    The empty rank still evaluates (which completes its pending update) and joins the gather,
    and every rank's sampler ends with the same tables. Ranks are threads here."""
    size, labels = 4, np.array([0, 0, 1, 1, 2, 2])
    barrier, rows, asked, samplers, errors = threading.Barrier(size, timeout=30), [None] * size, {}, {}, []

    def stats(ids):                                  # a sample's numbers, a function of its id
        return 1.0 + ids, 0.5 + ids / 10

    class Rank(LocalCommunicator):
        def __init__(self, rank):
            self.rank, self.size = rank, size

        def allgather(self, arr):
            rows[self.rank] = np.array(arr)
            barrier.wait()
            out = np.stack(rows)
            barrier.wait()
            return out

    def rank_main(r):
        try:
            sampler = ASSampler(6, 2, labels, refresh="every-bin", refresh_per_bin=1, beta=1)
            feed = SamplerFeed(sampler, Rank(r), lambda what, phase: contextlib.nullcontext(),
                               evaluate=lambda ids: (asked.setdefault(r, ids), stats(ids))[1])
            ids, _ = sampler.batch(0, 0)             # 2 samples: this rank's share of 1 or 0
            feed.observe(1, ids, [(np.arange(len(ids)), stats(rank_slice(ids, r, size)))])
            feed.probe(1)                            # after the step's check, as the trainer
            samplers[r] = sampler
        except BaseException as exc:                 # noqa: BLE001 -- reported below
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert [len(asked[r]) for r in range(size)] == [1, 1, 1, 0]
    probed = np.concatenate([asked[r] for r in range(size)])
    assert sorted(labels[probed]) == [0, 1, 2]
    np.testing.assert_array_equal(samplers[0].losses[probed], stats(probed)[0])
    np.testing.assert_array_equal(samplers[0].bounds[probed], stats(probed)[1])
    for r in range(1, size):
        for k, v in samplers[0].state_dict().items():
            np.testing.assert_array_equal(samplers[r].state_dict()[k], v, err_msg=f"rank {r}: {k}")


@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_a_probe_never_applies_an_update_that_skip_nonfinite_drops(sync):
    """The every-bin probe evaluates the model after every pending update. It must come after
    the step's non-finite check, or it applies the update --skip-nonfinite would drop. At lr
    1e30 step 0 is finite and every later one is not (and a probe is due every step):
    skipping them all leaves exactly the parameters after step 0."""
    kw = dict(model="mlp", dataset="synthetic:1x8x8:400", optimizer="sgd", lr=1e30, epochs=1,
              sync=sync, as_refresh="every-bin", as_beta=1, as_refresh_per_bin=2, dtype="float32")
    one_step, _ = run_to_overflow(max_steps=1, **kw)
    skipped, t = run_to_overflow(skip_nonfinite=100, **kw)
    assert t.skipped == t.step - 1 > 0
    for k in one_step:
        np.testing.assert_array_equal(skipped[k], one_step[k], err_msg=k)
