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
    res, took, report = run_check(tmp_path, QUICK="1", BUDGET="40", GPU_CHECK_WITHOUT_GPU="1",
                                  NO_TORCH="1", **env)
    assert res.returncode == 1
    assert took < 40 + 30, took                  # the budget, plus one section's kill grace
    assert "## Summary" in report and "| section | result | wall time |" in report
    first = report.index("GPU transports on 2 ranks")          # the 2-rank sections come first
    assert first < report.index("GPU tests (every layer") or "budget is spent" in report
    assert "FAILED (exit" in report                            # a 2-rank GPU run fails fast here
    assert "the 40 s budget is spent" in report                # and later sections are cut
    assert "status: FAILED" in report
