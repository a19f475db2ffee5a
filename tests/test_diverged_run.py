"""The issue's reproduction as a user runs it, on 1 and 2 ranks: `--max-steps 4 --lr 50
--optimizer sgd --save-weights n.npz` diverges; it must end exit 3 naming the step, write no
weights and leave the earlier checkpoint intact (it used to end exit 0 with poisoned weights)."""
import numpy as np
import pytest

from test_agreed_startup import mpirun_within


@pytest.mark.parametrize("ranks", [1, 2])
def test_diverging_run_exits_3_and_saves_nothing_poisoned(tmp_path, ranks):
    weights, ckpts = tmp_path / "n.npz", tmp_path / "ck"
    code, lines, _ = mpirun_within(120, ranks, "train", "--max-steps", 4, "--lr", 50,
                                   "--optimizer", "sgd", "--save-weights", weights, "--quiet",
                                   "--checkpoint-dir", ckpts, "--checkpoint-every", 2)
    assert code == 3, lines
    assert any(line.startswith("dptrain: training failed: ") and "after step 3" in line
               for line in lines), lines
    assert not weights.exists()
    assert sorted(p.name for p in ckpts.glob("ckpt-*.npz")) == ["ckpt-000000002.npz"]
    with np.load(ckpts / "ckpt-000000002.npz") as saved:
        assert all(np.isfinite(saved[k]).all() for k in saved.files if saved[k].dtype.kind == "f")
