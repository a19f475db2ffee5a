"""scripts/reproduce_sampling.py: both cost measures, spreads over repeats, paired ratios,
the flag on cells too short for AS, and a run on an MNIST IDX directory (mnist:DIR)."""
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from test_readers import make_mnist_dir

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT / "scripts"))
import reproduce_sampling as rs  # noqa: E402

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


def test_spread_is_median_and_inter_quartile_range():
    s = rs.spread([1.0, 2.0, 4.0, float("nan")])
    assert (s["median"], s["q25"], s["q75"], s["n"]) == (2.0, 1.5, 3.0, 3)
    assert rs.cell(s) == "2 [1.5, 3]" and rs.cell(rs.spread([5.0])) == "5"
    assert rs.cell(rs.spread([])) == "-"


def _lines(sampler, seed_losses, beta=10, steps=60, counter="batches"):
    """A fake run: a run line and, per epoch, one epoch line, two step lines, two evals."""
    lines = [{"type": "run", "total_steps": steps,
              "config": {"sampler": sampler, "as_beta": beta, "as_delta_p": 0.9, "as_counter": counter}}]
    for e, loss in enumerate(seed_losses, start=1):
        lines += [{"type": "step", "epoch": e, "loss": 10 * loss}, {"type": "step", "epoch": e, "loss": 30 * loss},
                  {"type": "epoch", "epoch": e, "loss": 0.0, "time_s": 1.0},
                  {"type": "eval", "epoch": e, "split": "train", "loss": loss, "accuracy": 0.5},
                  {"type": "eval", "epoch": e, "split": "test", "loss": loss, "accuracy": 0.9}]
    return lines


def test_ratios_pair_the_runs_of_one_seed_and_short_cells_are_flagged():
    results = {}
    for rep, (u, a) in enumerate([(1.0, 2.0), (2.0, 8.0), (4.0, 4.0)]):
        for variant, loss, lines in [("uniform", u, _lines("uniform", [9, u])),
                                     ("obs", u / 2, _lines("obs", [9, u / 2])),
                                     ("as-x", a, _lines("as", [9, a]))]:
            results[(variant, "adam", 64, rep)] = (rs.curves(lines), lines)
    rows = {r["variant"]: r for r in rs.summarise(results, 2, ["uniform", "obs", "as-x"])}
    assert rows["as-x"]["train_set_over_uniform"]["median"] == 2.0      # ratios 2, 4, 1
    assert rows["as-x"]["train_set_over_obs"]["median"] == 4.0
    assert rows["as-x"]["minibatch"]["median"] == 20 * 4.0              # mean of 10x and 30x
    assert rows["as-x"]["minibatch_over_uniform"]["median"] == 2.0
    assert rows["as-x"]["p_still_uniform"] == pytest.approx(0.9 ** 6)  # 60 steps, beta 10
    assert "uniform_over" not in " ".join(rows["uniform"])
    text = rs.table(list(rows.values()), 2)
    assert "as-x (P 53% uniform)" in text and "| 2 [1.5, 3] |" in text


def test_the_per_sample_counter_is_never_short():
    lines = _lines("as", [1.0], counter="samples")
    assert rs.p_still_uniform(lines) == 0.0 and rs.p_still_uniform(_lines("obs", [1.0])) is None


@pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
def test_a_run_on_an_mnist_directory(tmp_path):
    (tmp_path / "mnist").mkdir()
    digits = make_mnist_dir(tmp_path / "mnist", n_train=96, n_test=20)
    for f in digits.iterdir():                       # the dotted names some copies use
        f.rename(f.with_name(f.name.replace("-idx", ".idx")))
    out = tmp_path / "out"
    rs.main(["--dataset", f"mnist:{digits}", "--epochs", "2", "--repeats", "2", "--batches", "32",
             "--optimizers", "adam", "--variants", "uniform,as-eq67-every-bin", "--ranks", "1",
             "--out", str(out), "--", "--as-beta", "2"])
    runs = sorted(p.name for p in out.glob("*.jsonl"))
    assert runs == [f"{v}-adam-32-r{r}.jsonl" for v in ("as-eq67-every-bin", "uniform") for r in (0, 1)]
    first = json.loads((out / runs[0]).read_text().splitlines()[0])
    assert first["config"]["dataset"] == f"mnist:{digits}" and first["config"]["as_refresh"] == "every-bin"
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == ["uniform", "as-eq67-every-bin"]
    assert all(r["runs"] == 2 and np.isfinite(r["train_set"]["median"]) for r in rows)
    # 3 steps an epoch, beta 2: P re-estimated 3 times, 0.9 ** 3 of it still uniform
    assert "| adam | 32 | as-eq67-every-bin (P 73% uniform) |" in (out / "table.md").read_text()
    for name in ("cost_vs_epoch", "batch_cost_vs_epoch", "cost_vs_time", "accuracy_vs_epoch"):
        assert (out / f"{name}.png").stat().st_size > 0
    # a second call reuses the finished runs
    before = {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}
    rs.main(["--dataset", f"mnist:{digits}", "--epochs", "2", "--repeats", "2", "--batches", "32",
             "--optimizers", "adam", "--variants", "uniform,as-eq67-every-bin", "--ranks", "1",
             "--out", str(out), "--", "--as-beta", "2"])
    assert before == {p: p.stat().st_mtime_ns for p in out.glob("*.jsonl")}
