"""No non-finite state is ever evaluated as the result, checkpointed or saved (issue 20, kind 4).

`dptrain train --max-steps 4 --lr 50 --optimizer sgd` used to end exit 0 with a NaN test loss
and weights `dptrain eval` refuses: step 3's loss and gradients are finite, but its forward
pass overflowed a batch-norm running variance, and nothing looked at the state after the
last step. Every settle now checks the parameters and buffers themselves."""
from contextlib import nullcontext

import numpy as np
import pytest

from dptrain import models
from dptrain.comm.local import LocalCommunicator
from dptrain.errors import TrainingFailure
from dptrain.train import TrainConfig, Trainer
from dptrain.train.final_state import check_finite_state, first_nonfinite


def no_guard(what, phase):
    return nullcontext()


def test_first_nonfinite_names_a_parameter_or_a_buffer():
    model = models.get("thesis-cnn", (1, 28, 28), 10, seed=0)
    assert first_nonfinite(model) is None
    buffers = dict(model.named_buffers())
    buffers["5.running_var"][3] = np.inf
    assert first_nonfinite(model) == "5.running_var"
    dict(model.named_params())["0.W"].reshape(-1)[7] = np.nan
    assert first_nonfinite(model) == "0.W"          # parameters first


def test_check_finite_state_fails_with_the_array_and_the_last_step():
    model = models.get("mlp", (1, 8, 8), 4, seed=0)
    check_finite_state(model, LocalCommunicator(), 5, no_guard, rank_local=False)
    next(iter(dict(model.named_params()).values())).reshape(-1)[0] = np.inf
    with pytest.raises(TrainingFailure, match=r"^1\.W holds NaN or infinite values after step 4 "):
        check_finite_state(model, LocalCommunicator(), 5, no_guard, rank_local=False)


@pytest.mark.parametrize("max_steps", range(1, 7))
def test_a_diverging_run_never_ends_with_poisoned_state(tmp_path, max_steps):
    """The issue's reproduction for 1..6 steps: either exit 3 (TrainingFailure) naming the step,
    with no weights file and no checkpoint of the diverged state, or a finite test loss and
    finite weights. Before the fix 4 steps returned a NaN test loss and wrote inf weights."""
    weights, ckpts = tmp_path / "n.npz", tmp_path / "ck"
    cfg = TrainConfig(max_steps=max_steps, lr=50, optimizer="sgd", quiet=True, threads=1,
                      save_weights=str(weights), checkpoint_dir=str(ckpts), checkpoint_every="2")
    try:
        result = Trainer(cfg).run()
    except TrainingFailure as exc:
        assert max_steps >= 3, exc
        assert "step" in str(exc) and not weights.exists()
        for ckpt in ckpts.glob("ckpt-*.npz"):          # earlier checkpoints: finite, intact
            with np.load(ckpt) as saved:
                assert all(np.isfinite(saved[k]).all() for k in saved.files
                           if saved[k].dtype.kind == "f"), ckpt
        return
    assert max_steps <= 2                 # the reproduction diverges by step 3 (0-based 2)
    assert np.isfinite(result["test_loss"])
    with np.load(weights) as saved:
        assert all(np.isfinite(saved[k]).all() for k in saved.files)


def test_the_issue_reproduction_fails_at_four_steps(tmp_path):
    cfg = TrainConfig(max_steps=4, lr=50, optimizer="sgd", quiet=True, threads=1,
                      save_weights=str(tmp_path / "n.npz"))
    with pytest.raises(TrainingFailure, match=r"running_var holds NaN or infinite values after step 3"):
        Trainer(cfg).run()
    assert not (tmp_path / "n.npz").exists()


class PeerReports:
    """Rank 0 of two whose peer reports ``peer`` to allreduce_obj (MPI's sum of lists)."""
    rank, size = 0, 2

    def __init__(self, peer):
        self.peer, self.exchanges = peer, 0

    def allreduce_obj(self, obj):
        self.exchanges += 1
        return obj + self.peer


def test_rank_local_statistics_are_agreed_so_every_rank_fails_alike():
    """Without --sync-bn each rank's running statistics are its own: a rank whose copy is
    finite still fails when its peer's is not (else it would wait in the evaluation)."""
    model = models.get("thesis-cnn", (1, 28, 28), 10, seed=0)
    comm = PeerReports([(1, "5.running_var")])
    with pytest.raises(TrainingFailure, match=r"^5\.running_var holds NaN .* after step 2 on rank 1 "):
        check_finite_state(model, comm, 3, no_guard, rank_local=True)
    assert comm.exchanges == 1
    shared = PeerReports([])                     # identical state: no collective at all
    check_finite_state(model, shared, 3, no_guard, rank_local=False)
    assert shared.exchanges == 0


@pytest.mark.parametrize("sync", ["blocking", "overlap"])
def test_a_skipped_step_leaves_no_running_statistics_behind(monkeypatch, sync):
    """--skip-nonfinite drops a step whose batch holds a NaN: its forward pass had already
    folded NaN into the batch-norm running statistics, which only evaluation reads, so the
    run ended exit 0 with a NaN test loss; then, with the state check, exit 3. The skip now
    undoes them too, and the run ends well."""
    cfg = TrainConfig(model="thesis-cnn", dataset="synthetic:1x28x28:200", batch_size=16,
                      max_steps=6, quiet=True, threads=1, sync=sync, skip_nonfinite=1)
    t = Trainer(cfg)
    forward = t.model.forward
    saved = {}

    def poisoned(x, *args, **kw):
        if t.step == 3 and not saved:
            saved.update({k: v.copy() for k, v in t.model.named_buffers()})
            x = x.copy()
            x[0] = np.nan
        return forward(x, *args, **kw)
    monkeypatch.setattr(t.model, "forward", poisoned)
    result = t.run()
    assert t.skipped == 1 and np.isfinite(result["test_loss"])
    assert all(np.isfinite(v).all() for _, v in t.model.named_buffers())
