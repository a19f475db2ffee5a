"""``dptrain bench --kernel-ops`` runs on a CPU too: the kernels' source compiled with g++
against the NumPy code, every family on the model's layer shapes (the times say nothing of a
GPU; the command, the cases and the report are what is checked here)."""
import json
import shutil
import subprocess
import sys

import pytest

from dptrain.nn import cuda_kernels


@pytest.mark.skipif(shutil.which("g++") is None, reason="no g++ to compile the kernels")
def test_kernel_ops_on_a_cpu_compares_every_family(tmp_path):
    out = tmp_path / "kernel_ops.json"
    run = subprocess.run([sys.executable, "-m", "dptrain.cli", "bench", "--kernel-ops",
                          "--device", "cpu", "--model", "thesis-cnn", "--batch-size", "2",
                          "--steps", "1", "--json-out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    report = json.loads(out.read_text())
    assert report["device"] == "cpu"
    assert set(report["families"]) == set(cuda_kernels.FAMILIES)
    fused = [r for r in report["rows"] if r["family"] == "bn_relu_pool"]
    assert len(fused) == 2 and all("+ ReLU + MaxPool2D(2x2" in r["case"] for r in fused)
    assert all(r["generic_ms"] > 0 and r["kernel_ms"] > 0 for r in report["rows"])
    assert "bn_relu_pool total: generic" in run.stdout
