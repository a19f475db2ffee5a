"""A bench cut short (Ctrl-C, a scheduler's SIGTERM, timeout) keeps what it finished: each
measurement is on stdout as it finishes and in --json-out, the cut prints the medians of what
finished, and the command exits 128 + the signal with one line, no traceback."""
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest


def _first_line(proc, deadline_s=120):
    """The bench's first stdout line, read as soon as it is there (never after the end)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        ready, _, _ = select.select([proc.stdout], [], [], 1.0)
        if ready:
            return proc.stdout.readline()
        assert proc.poll() is None, proc.stderr.read()
    proc.kill()
    pytest.fail("the bench printed nothing while it ran")


def _bench(tmp_path, *argv):
    return subprocess.Popen([sys.executable, "-m", "dptrain.cli", "bench", "--model", "mlp",
                             "--no-torch", "--json-out", str(tmp_path / "b.json"), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=tmp_path, bufsize=1)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_cut_step_bench_keeps_the_rounds_it_finished(tmp_path, sig):
    proc = _bench(tmp_path, "--steps", "3", "--warmup", "1", "--rounds", "10000")
    first = _first_line(proc)
    assert first.startswith("  round 1/10000: dptrain step ")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err and f"dptrain: interrupted by {sig.name}" in err
    assert "measurements; medians over what finished" in out and "dptrain step" in out
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["complete"] is False and report["measurements_done"] >= 1
    assert report["dptrain_step_ms"] > 0


def _workers_of(tmp_path):
    """Processes still running a bench worker whose result file is in tmp_path."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().decode(errors="replace")
        except OSError:
            continue
        if "dp_worker" in cmd and str(tmp_path) in cmd:
            found.append(pid)
    return found


def test_a_cut_ranks_bench_keeps_its_rows_and_leaves_no_worker(tmp_path):
    proc = _bench(tmp_path, "--ranks", "1,2", "--schedules", "blocking", "--steps", "3",
                  "--warmup", "1", "--rounds", "1000")
    assert _first_line(proc).startswith("  round 1/1000: 1 rank(s) single: step ")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err, err
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert rows[0]["ranks"] == 1 and rows[0]["step_ms"] > 0
    deadline = time.monotonic() + 10
    while _workers_of(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _workers_of(tmp_path)
    assert not list(tmp_path.glob(".dptrain-bench-*"))      # result files removed
