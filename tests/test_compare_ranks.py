"""scripts/compare_ranks.py (the GPU check's 1-rank against 2-rank comparison) on the CPU,
and the transport and order-check choices as a real 2-rank job reports them."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")


def compare(*flags, rtol="1e-9"):
    cmd = [sys.executable, str(ROOT / "scripts" / "compare_ranks.py"), "--ranks", "2", "--rtol", rtol,
           "--", "--model", "mlp", "--dataset", "synthetic:1x8x8:200", "--dtype", "float64",
           "--batch-size", "32", "--max-steps", "4", "--threads", "1", *flags]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_one_and_two_ranks_agree_under_the_strict_order_check():
    res = compare("--check-collectives", "strict")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 rank vs 2 ranks: the same parameters" in res.stdout


def test_a_difference_is_reported_and_fails(tmp_path, capsys):
    import numpy as np
    sys.path.insert(0, str(ROOT / "scripts"))
    import compare_ranks
    np.savez(tmp_path / "a.npz", **{"0.W": np.ones(3), "0.b": np.zeros(2)})
    np.savez(tmp_path / "b.npz", **{"0.W": np.array([1.0, 1.0, 1.001]), "0.b": np.zeros(2)})
    assert compare_ranks.report(str(tmp_path / "a.npz"), str(tmp_path / "a.npz"), 1e-9, 1e-12)
    assert not compare_ranks.report(str(tmp_path / "a.npz"), str(tmp_path / "b.npz"), 1e-9, 1e-12)
    assert "0.W         3  max rel diff 1.000e-03  <-- differs" in capsys.readouterr().out
