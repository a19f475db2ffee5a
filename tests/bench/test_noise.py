"""Figures outside their possible range are flagged as noise, not printed as facts
(bench/noise.py, and the tables of bench/scaling.py and bench/overlap_bench.py)."""
from types import SimpleNamespace

from dptrain.bench import noise
from dptrain.bench.overlap_bench import _print_overlap
from dptrain.bench.scaling import _print_scaling


def test_impossible_values_are_flagged_and_possible_ones_are_not():
    row = noise.flag({"hidden_fraction": 6.27, "exposed_ms": -37.6, "comm_ms": 1.0,
                      "efficiency": 1.2, "step_ms": -1.0})       # step_ms: not a bounded figure
    assert row["noise"] == ["hidden_fraction", "exposed_ms", "efficiency"]
    assert row["hidden_fraction"] == 6.27 and row["exposed_ms"] == -37.6   # raw values kept
    ok = noise.flag({"hidden_fraction": 0.0, "exposed_ms": 0.0, "efficiency": 1.0,
                     "bound_hidden_fraction": 1.0, "dependency_bound": 0.4})
    assert "noise" not in ok
    assert noise.impossible("hidden_fraction", -1.18) and noise.impossible("wall_efficiency", 1.01)
    assert not noise.impossible("hidden_fraction", None) and not noise.impossible("other", -5)


def test_a_flagged_cell_says_noise_and_the_note_gives_the_raw_value():
    row = noise.flag({"hidden_fraction": -1.18, "exposed_ms": 3.0})
    assert noise.cell(row, "hidden_fraction", ".2f") == "noise"
    assert noise.cell(row, "exposed_ms", ".1f") == "3.0"
    assert noise.cell(row, "dependency_bound", ".2f") == "-"
    lines = noise.notes([row], lambda r: "overlap")
    assert lines[0] == "  noise: overlap: hidden_fraction = -1.18 (a fraction of the " \
                       "communication: between 0 and 1)"
    assert lines[-1].strip().startswith("noise: a figure outside its possible range")
    assert noise.notes([noise.flag({"hidden_fraction": 0.5})], str) == []


def _overlap_row(sync, exposed, hidden=None):
    row = {"model": "thesis-cnn", "net": "bw=100Mbit", "ranks": 2, "sync": sync, "progress": "poll",
           "bucket_mb": None, "step_ms": 40.0, "images_per_s": 3200.0, "exposed_ms": exposed,
           "bytes_per_step": 2**20}
    if hidden is not None:
        row["hidden_fraction"] = hidden
    return noise.flag(row)


def test_the_overlap_table_prints_no_impossible_figure(capsys):
    rows = [_overlap_row("blocking", 5.0), _overlap_row("overlap", -37.6, 6.27),
            _overlap_row("overlap-fc", 2.0, 0.6)]
    _print_overlap({"rows": rows}, SimpleNamespace(batch_size=64, threads=1, rounds=2, steps=10), 2)
    out = capsys.readouterr().out
    table = out.split("  noise:")[0]
    assert "6.27" not in table and "-37.6" not in table and table.count("noise") == 2
    assert "0.60" in table                                  # a possible figure stays a figure
    assert "hidden_fraction = 6.27" in out and "exposed_ms = -37.6" in out


def test_the_scaling_table_flags_an_efficiency_above_one(capsys):
    spread = {"min": 0.9, "median": 1.08, "max": 1.2, "rounds": 3}
    row = noise.flag({"ranks": 2, "sync": "blocking", "progress": "poll", "bucket_mb": None,
                      "step_ms": 30.0, "predicted_step_ms": None, "images_per_s": 4000.0,
                      "efficiency": 1.05, "comm_ms": 1.0, "exposed_ms": 1.0, "hidden_fraction": 0.0,
                      "bytes_per_step": 2**20, "wall_step_ms": 31.0, "wall_efficiency": 1.08,
                      "wall_efficiency_spread": spread})
    args = SimpleNamespace(model="mlp", batch_size=64, threads=1, rounds=3, steps=40)
    _print_scaling({"rows": [row], "torch": [], "torch_skipped": None}, args,
                   (None, SimpleNamespace(argv=["mpiexec"])))
    out = capsys.readouterr().out
    table = out.split("  noise:")[0]
    assert "1.050" not in table and "noise [0.90-1.20]" in table
    assert "efficiency = 1.05" in out and "wall_efficiency = 1.08" in out
