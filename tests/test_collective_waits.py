"""scripts/collective_waits.py: a run's Allreduce calls recorded and reported by position."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "collective_waits.py"
sys.path.insert(0, str(SCRIPT.parent))
import collective_waits  # noqa: E402


def test_a_step_ends_with_its_largest_allreduce():
    sizes = np.array([33, 32, 64, 1000, 33, 32, 64, 1000, 33])
    assert collective_waits.positions(sizes).tolist() == [0, 1, 2, 3, 0, 1, 2, 3, 0]


def test_the_report_splits_waiting_from_the_collective_s_own_cost(tmp_path, capsys):
    # two ranks, 50 steps of [small, gradients]: rank 1 arrives 300 us late at the small one
    calls = {0: [], 1: []}
    t = 0
    for _ in range(50):
        t += 2_000_000                                       # 2 ms of compute, in ns
        calls[0].append((t, t + 320_000, 33))                # waits 300 us, costs 20
        calls[1].append((t + 300_000, t + 320_000, 33))
        t += 1_000_000
        for r in (0, 1):
            calls[r].append((t, t + 150_000, 160_000))
        t += 150_000
    for r, c in calls.items():
        np.save(tmp_path / f"rank-{r}.npy", np.array(c, dtype=np.int64))
    collective_waits.report(str(tmp_path))
    out = capsys.readouterr().out
    assert "| 0 | 33 | " in out and "| 300 / 300 | 170 / 20 | 150 |" in out, out
    assert "| 1 | 160000 | " in out and "| 0 / 0 | 150 / 150 | 0 |" in out, out
    assert "waiting in all, per step and rank: 0.15 ms" in out


def test_record_times_a_real_run(tmp_path):
    """Under MPI (one rank: its communicator is MPI's, whose Allreduce is what is timed)."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        pytest.skip("no mpiexec next to this Python")
    out = tmp_path / "calls"
    res = subprocess.run([str(mpiexec), "-n", "1", sys.executable, str(SCRIPT), "record", str(out), "--", "train",
                          "--model", "mlp", "--dataset", "synthetic:1x8x8:256", "--quiet",
                          "--max-steps", "20", "--sync", "blocking"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         stdin=subprocess.DEVNULL)
    assert res.returncode == 0, res.stderr
    calls = np.load(out / "rank-0.npy")
    assert len(calls) >= 20 and (calls[:, 1] >= calls[:, 0]).all()
