"""The fault battery's runner (scripts/fault_battery/) classifies as it says: a case whose
expectation holds is "held", a wrong expectation is a "defect" naming it, and a case past its
deadline is a "hang" whose whole process group is killed. Runs a few of its cheapest cases."""
import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from fault_battery.case import Case, mpi, train, TINY  # noqa: E402
from fault_battery.cases import all_cases  # noqa: E402
from fault_battery.main import main, summary  # noqa: E402
from fault_battery.runner import run_case  # noqa: E402


def _case(name):
    return next(c for c in all_cases() if c.name == name)


def test_cases_cover_every_kind_with_unique_names():
    cases = all_cases()
    assert {c.kind for c in cases} == set(range(1, 9))
    assert len(cases) >= 80


@pytest.mark.parametrize("name", ["flag-abbreviation-epoch", "synthetic-extra-field"])
def test_cheap_cases_hold(name):
    result = run_case(_case(name))
    assert result.verdict == "held", result.reason


def test_wrong_expectation_is_a_defect_naming_it():
    case = Case("wrong", 8, train(*TINY, "--epoch", "2"), rc=0)
    result = run_case(case)
    assert result.verdict == "defect"
    assert "exit 2, expected [0]" in result.reason
    case = Case("wrong-stderr", 8, train(*TINY, "--epoch", "2"), rc=2, stderr="no such text")
    assert "stderr lacks /no such text/" in run_case(case).reason


def test_overrun_is_a_hang_and_its_process_group_is_killed(tmp_path):
    pidfile = tmp_path / "child.pid"
    script = ("import subprocess, sys, time; p = subprocess.Popen(['sleep', '60']); "
              f"open({str(pidfile)!r}, 'w').write(str(p.pid)); time.sleep(60)")
    case = Case("sleeper", 2, [sys.executable, "-c", script], deadline=1.5)
    start = time.monotonic()
    result = run_case(case)
    assert result.verdict == "hang"
    assert time.monotonic() - start < 20
    child = int(pidfile.read_text())
    time.sleep(0.2)
    state = Path(f"/proc/{child}/stat")
    assert not state.exists() or state.read_text().split(") ")[1][0] == "Z"


def test_main_prints_the_counts_and_fails_unless_all_held(capsys):
    assert main(["-k", "^flag-abbreviation-epoch$"]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("1 held, 0 defects, 0 hangs")
    assert "flag-abbreviation-epoch" in out
    assert main(["-k", "^nothing-matches$"]) == 1
    assert summary([]) == "0 held, 0 defects, 0 hangs"
