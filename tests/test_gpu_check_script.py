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


def test_a_hung_section_is_killed_and_the_rest_cut_by_the_budget(tmp_path):
    """The first section (2 ranks) hangs: an ``mpiexec`` that sleeps. The budget, not the
    section's own limit, ends it, and every later section is reported as cut. The budget
    leaves the start-up (Python imports: slow on a loaded machine) 25 s before the first
    section's 15 s floor, so the outcome does not depend on this machine's load."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mpiexec").write_text("#!/bin/sh\nexec sleep 600\n")
    (fake / "mpiexec").chmod(0o755)
    budget = 40
    env = {"PATH": f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    res, took, report = run_check(tmp_path, QUICK="1", BUDGET=str(budget),
                                  GPU_CHECK_WITHOUT_GPU="1", NO_TORCH="1", **env)
    assert res.returncode == 1
    assert took < budget + 30, took              # the budget, plus one section's kill grace
    assert "## Summary" in report and "| section | result | wall time |" in report
    rows = [line for line in report.splitlines() if line.startswith("| ") and " s |" in line
            or "budget is spent |" in line]
    assert rows[0].startswith("| GPU transports on 2 ranks")  # the 2-rank sections come first
    assert "| TIMED OUT after " in rows[0]                     # it ran, and the budget ended it
    assert len(rows) > 2 and all(f"the {budget} s budget is spent" in r for r in rows[1:])
    assert "status: FAILED" in report
