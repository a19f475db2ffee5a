"""``dptrain bench --ranks --launcher/--hostfile``: the multi-rank rows through the user's
launcher, the per-node fields of the report, and bad launchers refused with exit 2."""
import json
import os
import socket
import stat
import sys

import pytest

from dptrain.bench.launcher import parse_launcher
from dptrain.bench.node_links import counter_delta, read_counters
from dptrain.errors import UsageError
from test_cli import assert_usage_error, dptrain

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
needs_mpiexec = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
QUICK = ["--model", "mlp", "--batch-size", "8", "--steps", "3", "--warmup", "1", "--rounds", "1",
         "--no-torch", "--schedules", "blocking,overlap,auto", "--json"]


@pytest.mark.parametrize("argv,says", [
    (["--launcher", "mpiexec -f 'hosts"], "--launcher \"mpiexec -f 'hosts\": cannot be split"),
    (["--launcher", "  "], "--launcher is empty"),
    (["--launcher", "no-such-launcher-d9 -ppn 2"], "no-such-launcher-d9 not found on PATH"),
    (["--launcher", "/no/such/dir/mpiexec"], "/no/such/dir/mpiexec is not an executable file"),
    (["--launcher", f"{MPIEXEC} -n 4"], "leave out -n"),
    (["--launcher", "srun --ntasks=4"], "leave out --ntasks"),
    (["--hostfile", "/no/such/hosts"], "--hostfile /no/such/hosts: no such file"),
    (["--hostfile", "/etc/hostname", "--launcher", "srun"], "give one"),
])
def test_bad_launcher_is_exit_2_naming_it(argv, says):
    res = dptrain("bench", "--ranks", "1,2", "--model", "mlp", *argv, timeout=120)
    assert_usage_error(res, says)


def test_launcher_without_ranks_is_exit_2():
    assert_usage_error(dptrain("bench", "--model", "mlp", "--launcher", sys.executable, timeout=120),
                       "--launcher starts the multi-rank rows of --ranks")


def test_parse_launcher_splits_without_a_shell():
    launcher = parse_launcher(f"{sys.executable} -f 'my hosts' -ppn 2", None)
    assert launcher.command(4, bind=True) == [sys.executable, "-f", "my hosts", "-ppn", "2", "-n", "4"]
    assert parse_launcher(None, None) is None
    with pytest.raises(UsageError, match="--launcher"):
        parse_launcher(f"{sys.executable}; rm -rf /", None)       # ';' is part of a word: not found


def test_interface_counters_per_step_leave_out_loopback(tmp_path):
    for name, tx, rx in (("lo", 10**9, 10**9), ("eth0", 1000, 500)):
        d = tmp_path / name / "statistics"
        d.mkdir(parents=True)
        (d / "tx_bytes").write_text(f"{tx}\n")
        (d / "rx_bytes").write_text(f"{rx}\n")
    before = read_counters(str(tmp_path))
    assert before == {"eth0": [1000, 500]}
    (tmp_path / "eth0" / "statistics" / "tx_bytes").write_text("5000\n")
    delta = counter_delta(before, read_counters(str(tmp_path)), steps=4)
    assert delta["tx_bytes_per_step"] == 1000 and delta["rx_bytes_per_step"] == 0
    assert read_counters(str(tmp_path / "none")) is None and counter_delta(None, {}, 1) is None


def _rows(*extra):
    res = dptrain("bench", "--ranks", "1,2", *QUICK, *extra, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


@needs_mpiexec
def test_launcher_on_one_host_gives_todays_rows_and_one_node(tmp_path):
    # a launcher of the user's: logs how it was called, chatters on stdout (as srun or ssh may),
    # then starts the ranks; the results must still come back (through rank 0's file)
    log = tmp_path / "calls"
    wrapper = tmp_path / "my launcher"
    wrapper.write_text(f"#!/bin/sh\necho \"$@\" >> '{log}'\necho launcher says hello\n"
                       f"exec '{MPIEXEC}' \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    ours = _rows("--launcher", f"'{wrapper}' -genv DPTRAIN_BENCH_T 1")
    today = _rows()
    calls = log.read_text().splitlines()
    assert len(calls) == 3 and all(c.startswith("-genv DPTRAIN_BENCH_T 1 -n 2 ") for c in calls)
    assert ours["launcher"] == [str(wrapper), "-genv", "DPTRAIN_BENCH_T", "1"]
    # auto's plan for a 1 ms step of a tiny model sits within its noise margin of two plans
    # (parallel/plan_margin.py), so its bytes may differ between runs; the fixed rows' may not
    key = [(r["ranks"], r["sync"], r["bytes_per_step"] if r["sync"] != "auto" else None)
           for r in ours["rows"]]
    assert key == [(r["ranks"], r["sync"], r["bytes_per_step"] if r["sync"] != "auto" else None)
                   for r in today["rows"]]
    assert [k[:2] for k in key] == [(1, "single"), (2, "blocking"), (2, "overlap"), (2, "auto")]
    host = socket.gethostname()
    for report in (ours, today):
        for r in report["rows"][1:]:
            assert r["nodes"] == 1 and r["hosts"] == [host, host] and r["node_of_rank"] == [0, 0]
            assert r["inter_node_link"] is None and r["job_link"]["bandwidth_bps"] > 0
            (node,) = r["per_node"]
            assert node["host"] == host and node["ranks"] == [0, 1] and node["node"] == 0
            assert node["intra_link"]["bandwidth_bps"] > 0 and node["intra_link"]["alpha_us"] >= 0
            if os.path.isdir("/sys/class/net"):
                assert node["tx_bytes_per_step"] >= 0 and "lo" not in node["interfaces"]
            assert r["predicted_step_ms"] > 0
        assert "nodes" not in report["rows"][0] and report["rows"][0]["predicted_step_ms"] > 0
    assert not list(tmp_path.glob(".dptrain-bench-*")) and not [
        p for p in os.listdir(".") if p.startswith(".dptrain-bench-")]     # result files removed


@needs_mpiexec
def test_bed_script_prints_one_markdown_row_per_schedule(tmp_path):
    """scripts/bed_bench.py on one host (1 node x 2 ranks): the table docs/performance.md shows."""
    import subprocess
    script = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "bed_bench.py")
    out = tmp_path / "reports.json"
    res = subprocess.run([sys.executable, script, "--launcher", MPIEXEC, "--links", "unshaped",
                          "--layouts", "1x2", "--models", "mlp", "--schedules", "blocking,auto",
                          "--batch-size", "8", "--steps", "2", "--warmup", "1", "--json-out", out],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("| link | nodes x ranks | model | schedule | step ms | predicted ms")
    rows = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    assert [r[:4] for r in rows][0] == ["unshaped", "1x2", "mlp", "blocking"]
    assert rows[1][3].startswith("auto") and len(rows) == 2
    assert all(float(r[4]) > 0 and float(r[5]) > 0 for r in rows) and rows[0][8] == "-"  # 1 node
    (report,) = json.loads(out.read_text())
    assert report["layout"] == "1x2" and report["launcher"][-2:] == ["-ppn", "2"]


@needs_mpiexec
def test_hostfile_is_mpiexec_f(tmp_path):
    hosts = tmp_path / "hosts"
    hosts.write_text(f"{socket.gethostname()}:2\n")
    res = dptrain("bench", "--ranks", "2", "--hostfile", hosts, *QUICK[:-2], "blocking", "--json",
                  timeout=300)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["launcher"] == [MPIEXEC, "-f", str(hosts)]
    (row,) = report["rows"]
    assert row["sync"] == "blocking" and row["nodes"] == 1 and row["per_node"][0]["ranks"] == [0, 1]


def test_reductions_give_a_row_each_and_refuse_unknown_names():
    from types import SimpleNamespace
    import pytest
    from dptrain.bench.scaling import _reductions
    from dptrain.errors import UsageError
    assert _reductions(SimpleNamespace(reductions="flat,hierarchical")) == ["flat", "hierarchical"]
    assert _reductions(SimpleNamespace(reductions="auto")) == ["auto"]
    with pytest.raises(UsageError, match="--reductions: 'ring'"):
        _reductions(SimpleNamespace(reductions="flat,ring"))
