"""scripts/gpu_check.sh always ends within its budget and reports every section, even when
sections fail or hang (run here without a GPU, where every GPU section fails fast)."""
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]


def run_check(tmp_path, **env):
    out = tmp_path / "gc"
    t0 = time.monotonic()
    res = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), str(out)], cwd=ROOT,
                         capture_output=True, text=True, timeout=240,
                         env={**os.environ, "GPU_CHECK_PYTHON": sys.executable, **env})
    return res, time.monotonic() - t0, (out / "report.md").read_text()


def test_without_a_gpu_it_stops_at_once(tmp_path):
    res, took, report = run_check(tmp_path, QUICK="1")
    assert res.returncode == 1 and "no usable GPU here" in report and took < 60


@pytest.mark.skipif(not (Path(sys.executable).parent / "mpiexec").exists(), reason="no mpiexec")
def test_sections_are_timed_bounded_and_summarised(tmp_path):
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res, took, report = run_check(tmp_path, QUICK="1", BUDGET="16", GPU_CHECK_WITHOUT_GPU="1",
                                  NO_TORCH="1", **env)
    assert res.returncode == 1
    assert took < 16 + 30, took                  # the budget, plus one section's kill grace
    assert "## Summary" in report and "| section | result | wall time |" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and " s |" in line
            or "budget is spent |" in line]
    assert rows[0].startswith("| GPU transports on 2 ranks")  # the 2-rank sections come first
    assert "budget is spent" not in rows[0]                     # the first one ran, timed
    assert "the 16 s budget is spent" in rows[-1]              # and what did not fit is cut
    assert "status: FAILED" in report
