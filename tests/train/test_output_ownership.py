"""Every output a run writes belongs to one live run: metrics, trace and weights files are
locked like the checkpoint directory; appending never glues a line to a cut one; pruning
removes only real checkpoints; a failed write is reported naming the file (one process)."""
import errno
import json
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.errors import TrainingFailure, UsageError
from dptrain.parallel import trace
from dptrain.train import TrainConfig, Trainer, checkpoint, metrics

BASE = dict(model="mlp", dataset="synthetic:1x8x8:120", batch_size=24, quiet=True, threads=1)


def trainer(**kw):
    return Trainer(TrainConfig(**{**BASE, **kw}), comm=LocalCommunicator())


@pytest.fixture
def live_run(tmp_path):
    """A long dptrain run writing metrics, a trace and weights, until killed."""
    out = {k: tmp_path / n for k, n in (("metrics", "m.jsonl"), ("trace", "t.json"),
                                        ("weights", "w.npz"))}
    cmd = [sys.executable, "-m", "dptrain", "train", "--model", "mlp", "--dataset",
           "synthetic:1x8x8:120", "--batch-size", "24", "--threads", "1", "--quiet",
           "--max-steps", "10000000", "--metrics-out", str(out["metrics"]),
           "--trace", str(out["trace"]), "--save-weights", str(out["weights"])]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not (out["metrics"].exists() and out["metrics"].stat().st_size > 0):
            assert p.poll() is None and time.monotonic() < deadline, p.stderr.read()
            time.sleep(0.1)
        yield p, out
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait()


def test_outputs_of_a_live_run_are_refused_naming_it(live_run, tmp_path):
    p, out = live_run
    out["metrics"].write_text("")            # as if the live run had not written yet
    with pytest.raises(UsageError, match=rf"--metrics-out {out['metrics']} is in use by pid "
                                         rf"{p.pid} .*give another file"):
        trainer(metrics_out=str(out["metrics"]), max_steps=1)
    with pytest.raises(UsageError, match=rf"--trace {out['trace']} is in use by pid {p.pid}"):
        trainer(trace=str(out["trace"]), max_steps=1)
    with pytest.raises(UsageError, match=rf"--save-weights {out['weights']} is in use by pid {p.pid}"):
        trainer(save_weights=str(out["weights"]), max_steps=1)
    # a resume of another checkpoint directory must not append to the live run's metrics
    d = tmp_path / "ck"
    trainer(checkpoint_dir=str(d), max_steps=2).run()
    with pytest.raises(UsageError, match=rf"--metrics-out {out['metrics']} is in use by pid {p.pid}"):
        trainer(checkpoint_dir=str(d), max_steps=4, resume=True, metrics_out=str(out["metrics"]))
    lines = [json.loads(line) for line in out["metrics"].read_text().splitlines()]
    assert len({line["run_id"] for line in lines}) <= 1        # the live run's lines only


def test_outputs_of_a_killed_run_are_taken_over(live_run, capsys):
    p, out = live_run
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    trainer(trace=str(out["trace"]), save_weights=str(out["weights"]), max_steps=2).run()
    assert "taking over the lock" in capsys.readouterr().err
    assert json.loads(out["trace"].read_text())["traceEvents"]
    assert sorted(n for n in os.listdir(out["weights"].parent) if "lock" not in n) == [
        "m.jsonl", "t.json", "w.npz"]                          # no temporary file left


def test_the_trace_is_written_whole_or_not_at_all(tmp_path, monkeypatch):
    t = tmp_path / "t.json"
    t.write_text('{"traceEvents": []}')

    def dump(doc, f):
        f.write('{"traceEvents": [')
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(trace, "json", types.SimpleNamespace(dump=dump))
    with pytest.raises(OSError, match=rf"No space left on device: '{t}'"):
        trainer(trace=str(t), max_steps=2).run()
    assert json.loads(t.read_text()) == {"traceEvents": []}
    assert os.listdir(tmp_path) == ["t.json"]


def test_appending_after_a_cut_line_keeps_every_line_json(tmp_path, capsys):
    m, d = tmp_path / "m.jsonl", tmp_path / "ck"
    trainer(metrics_out=str(m), checkpoint_dir=str(d), epochs=1).run()
    whole = m.read_text()
    with open(m, "a") as f:
        f.write('{"schema": 1, "run_id": "x", "type": "ep')      # a run killed mid-line
    trainer(metrics_out=str(m), checkpoint_dir=str(d), epochs=2, resume=True).run()
    text = m.read_text()
    assert text.startswith(whole) and text.endswith("\n")
    assert all(json.loads(line) for line in text.splitlines())
    assert "removed its cut last line (40 bytes" in capsys.readouterr().err


def test_a_failed_metrics_write_names_the_file(tmp_path):
    m = tmp_path / "m.jsonl"
    w = metrics.MetricsWriter(str(m), run_id="r")

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))      # as write(2) reports it

        def close(self):
            pass
    w._f = Full()
    with pytest.raises(OSError) as info:
        w.write("step", {"step": 1})
    assert info.value.filename == str(m) and info.value.errno == errno.ENOSPC


def test_an_output_named_like_a_checkpoint_inside_the_directory_is_refused(tmp_path):
    d = tmp_path / "ck"
    d.mkdir()
    for flag, name in (("metrics_out", "ckpt-000099999.npz"), ("trace", ".ckpt-000000001.9.tmp"),
                       ("save_weights", ".dptrain.lock")):
        with pytest.raises(UsageError, match=rf"inside --checkpoint-dir {d} and named like its "
                                             "checkpoints"):
            trainer(checkpoint_dir=str(d), **{flag: str(d / name)})
    trainer(checkpoint_dir=str(d), metrics_out=str(d / "metrics.jsonl"), max_steps=1).run()


def test_pruning_keeps_real_checkpoints_and_never_removes_other_files(tmp_path, capsys):
    d = tmp_path / "ck"
    trainer(checkpoint_dir=str(d), checkpoint_every="1", epochs=1).run()     # 4 steps an epoch
    junk = d / "ckpt-000099999.npz"
    junk.write_text('{"not": "a checkpoint"}\n')
    t = trainer(checkpoint_dir=str(d), checkpoint_every="1", epochs=3, keep_checkpoints=2,
                resume=True)
    assert t.resumed_from.name == "ckpt-000000004.npz"          # not fooled by the junk
    t.run()
    assert "skipping" in capsys.readouterr().err
    names = sorted(p.name for p in d.glob("ckpt-*"))
    assert names == ["ckpt-000000011.npz", "ckpt-000000012.npz", "ckpt-000099999.npz"]
    assert junk.read_text() == '{"not": "a checkpoint"}\n'


def test_a_checkpoint_directory_gone_read_only_reports_the_write(tmp_path, monkeypatch):
    """What a read-only directory does (root ignores the mode bits, so it is injected):
    creating the checkpoint fails, and so does removing the lock afterwards."""
    d = tmp_path / "ck"
    t = trainer(checkpoint_dir=str(d), checkpoint_every="2", max_steps=4)
    real_open, real_unlink = open, pathlib.Path.unlink

    def refuse(path):
        if str(path).startswith(str(d)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    def guarded_open(path, *a, **k):
        refuse(path)
        return real_open(path, *a, **k)

    def guarded_unlink(self, *a, **k):
        refuse(self)
        return real_unlink(self, *a, **k)
    monkeypatch.setattr(checkpoint, "open", guarded_open, raising=False)
    monkeypatch.setattr(pathlib.Path, "unlink", guarded_unlink)
    with pytest.raises(TrainingFailure, match=r"cannot write the checkpoint of step 2 to "
                                              rf"{d}/ckpt-000000002\.npz \(Permission denied\)"):
        t.run()
    assert not np.any([p.name.startswith("ckpt-") for p in d.iterdir()])
