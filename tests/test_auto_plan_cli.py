"""`--sync auto` / `--bucket-mb auto` from the command line: accepted values, the link in the
first line, the plan printed once and recorded in the metrics."""
import json
import os
import subprocess
import sys

import pytest

from test_cli import assert_usage_error, dptrain

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")


@pytest.mark.parametrize("value", ["big", "-1", "0"])
def test_bad_bucket_cap_is_one_line_exit_2(value):
    res = dptrain("train", "--bucket-mb", value, "--max-steps", 1)
    assert_usage_error(res, "--bucket-mb")


def test_bucket_cap_auto_in_a_config_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('bucket-mb = "auto"\nsync = "auto"\nmodel = "mlp"\ndataset = "synthetic:1x8x8:100"\n'
                   'max-steps = 2\n')
    res = dptrain("train", "--config", cfg)
    assert res.returncode == 0, res.stderr
    assert "link" not in res.stdout.splitlines()[0]          # one rank: nothing to measure
    assert "communication plan" not in res.stdout


@pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
def test_two_ranks_measure_the_link_and_report_the_plan_once(tmp_path):
    metrics = tmp_path / "m.jsonl"
    cmd = [MPIEXEC, "-n", "2", sys.executable, "-m", "dptrain.cli", "train", "--model", "mlp",
           "--dataset", "synthetic:1x8x8:600", "--batch-size", "32", "--max-steps", "12",
           "--net-emulate", "bw=200Mbit", "--threads", "1", "--metrics-out", str(metrics)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert "link alpha" in lines[0] and "Mbit/s (measured)" in lines[0], lines[0]
    plan_lines = [ln for ln in lines if ln.startswith("communication plan: --sync ")]
    assert len(plan_lines) == 1 and "measured" in plan_lines[0], res.stdout
    train_line = next(json.loads(ln) for ln in metrics.read_text().splitlines()
                      if json.loads(ln)["type"] == "epoch")
    comm = train_line["comm"]
    assert comm["sync"] in ("blocking", "overlap", "overlap-fc")
    assert comm["sync"] in plan_lines[0] and "measured_exposed_ms" in comm
    assert 100e6 <= comm["link_bandwidth_bps"] <= 300e6
    assert sorted(i for g in comm["buckets"] for i in g) == sorted(
        {1, 3, 5} - ({1, 3} if comm["sync"] == "overlap-fc" else set()))
