"""launch/slurm.sbatch submitted to a real single-node Slurm for a 2-task training run."""
import json
import os
import sys
from pathlib import Path

import pytest

from slurm_cluster import SlurmCluster, ensure_installed

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    why = ensure_installed()
    if why:
        pytest.skip(why)
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.timeout(900)
def test_slurm_sbatch_two_task_training(slurm, tmp_path):
    venv_bin = os.path.dirname(sys.executable)
    slurm.env["PATH"] = venv_bin + os.pathsep + slurm.env["PATH"]     # dptrain and mpiexec
    metrics = tmp_path / "m.jsonl"
    job = slurm.sbatch(str(ROOT / "launch" / "slurm.sbatch"), "--model", "mlp",
                       "--dataset", "synthetic:1x8x8:400", "--epochs", 2, "--batch-size", 30,
                       "--metrics-out", metrics, cwd=tmp_path)
    state = slurm.wait(job)
    out = (tmp_path / f"dptrain-{job}.out").read_text()
    assert state == "COMPLETED", out
    assert "2 tasks x 1 threads" in out and "2 rank(s)" in out and "test accuracy:" in out
    assert out.count("test accuracy:") == 1
    kinds = [json.loads(line)["type"] for line in metrics.read_text().splitlines()]
    assert kinds == ["run", "epoch", "eval", "epoch", "eval"]    # one writer: rank 0


def test_a_missing_slurm_is_a_skip_reason_never_an_install(monkeypatch):
    """`make test` installs nothing outside the project: without Slurm the test skips with a
    reason naming `make test-slurm`, and no command is run (no package manager)."""
    import shutil
    import subprocess
    import slurm_cluster

    def no_commands(*args, **kwargs):
        raise AssertionError(f"ran {args[0] if args else kwargs}")

    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    monkeypatch.setattr(subprocess, "run", no_commands)
    monkeypatch.setattr(subprocess, "Popen", no_commands)
    why = slurm_cluster.ensure_installed()
    assert why and "make test-slurm" in why and "slurmctld" in why
