"""Outputs that cannot collide or be lost: the checkpoint directory's lock, temporary files,
a full disk while checkpointing, a metrics file of another run (one process)."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.errors import TrainingFailure, UsageError
from dptrain.train import TrainConfig, Trainer, checkpoint, lock

BASE = dict(model="mlp", dataset="synthetic:1x8x8:120", batch_size=24, quiet=True, threads=1)


def trainer(**kw):
    return Trainer(TrainConfig(**{**BASE, **kw}), comm=LocalCommunicator())


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def write_lock(d, **owner):
    d.mkdir(exist_ok=True)
    (d / lock.LOCK_NAME).write_text(json.dumps(owner))


def test_a_live_owner_is_named_in_the_refusal(tmp_path):
    d = tmp_path / "ck"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as other:
        try:
            write_lock(d, pid=other.pid, host=lock.socket.gethostname(),
                       start=lock._start_time(other.pid), started="2026-11-27 01:00:00",
                       command="dptrain train --epochs 90")
            with pytest.raises(UsageError, match=rf"--checkpoint-dir {d} is in use by pid {other.pid} "
                                                 r"on .* \(since 2026-11-27 01:00:00: dptrain train --epochs 90\)"):
                trainer(checkpoint_dir=str(d))
        finally:
            other.kill()


def test_an_owner_on_another_host_is_refused(tmp_path):
    d = tmp_path / "ck"
    write_lock(d, pid=1, host="elsewhere.example", started="then", command="dptrain train")
    with pytest.raises(UsageError, match="in use by pid 1 on elsewhere.example"):
        trainer(checkpoint_dir=str(d))


def test_a_stale_lock_is_taken_over_with_a_warning_and_released(tmp_path, capsys):
    d = tmp_path / "ck"
    write_lock(d, pid=dead_pid(), host=lock.socket.gethostname(), started="then", command="x")
    t = trainer(checkpoint_dir=str(d), max_steps=2)
    assert "taking over the lock of pid" in capsys.readouterr().err
    assert json.loads((d / lock.LOCK_NAME).read_text())["pid"] == os.getpid()
    t.run()
    assert not (d / lock.LOCK_NAME).exists()


def test_a_refused_start_leaves_no_lock(tmp_path):
    d = tmp_path / "ck"
    with pytest.raises(UsageError):
        trainer(checkpoint_dir=str(d), resume=True)          # nothing to resume
    assert not (d / lock.LOCK_NAME).exists()


def test_temporary_files_of_killed_writes_are_swept_at_start(tmp_path):
    d = tmp_path / "ck"
    d.mkdir()
    (d / ".ckpt-000000004.12345.tmp").write_bytes(b"half a checkpoint")
    trainer(checkpoint_dir=str(d))
    assert not list(d.glob(".ckpt-*.tmp"))


def enospc_after(monkeypatch, n_ok):
    """np.savez in checkpoint.py fails with ENOSPC after writing part of its file, n_ok calls on."""
    calls = {"n": 0}
    real = np.savez

    def savez(f, **arrays):
        calls["n"] += 1
        if calls["n"] > n_ok:
            f.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(f, **arrays)
    monkeypatch.setattr(checkpoint.np, "savez", savez)


def test_a_full_disk_while_checkpointing_fails_cleanly_keeping_the_previous(tmp_path, monkeypatch):
    d = tmp_path / "ck"
    enospc_after(monkeypatch, 1)
    t = trainer(checkpoint_dir=str(d), checkpoint_every="2", max_steps=4)
    with pytest.raises(TrainingFailure, match=r"cannot write the checkpoint of step 4 to .*/ckpt-000000004\.npz \(No space "
                                              r"left on device\); the previous checkpoints are intact"):
        t.run()
    assert [p.name for p in checkpoint.list_checkpoints(d)] == ["ckpt-000000002.npz"]
    assert checkpoint.read(d / "ckpt-000000002.npz")["meta"]["step"] == 2
    assert not list(d.glob(".ckpt-*")) and not (d / lock.LOCK_NAME).exists()


def test_a_full_disk_while_saving_weights_leaves_no_stray_file(tmp_path, monkeypatch):
    from dptrain.train import setup

    def savez(path, **arrays):
        with open(path, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(setup.np, "savez", savez)
    with pytest.raises(TrainingFailure, match=r"cannot write --save-weights .*w.npz \(No space left"):
        trainer(save_weights=str(tmp_path / "w.npz"), max_steps=2).run()
    assert os.listdir(tmp_path) == []


def test_metrics_of_another_run_are_not_appended_to(tmp_path):
    m = tmp_path / "m.jsonl"
    m.write_text('{"epoch": 1}\n')
    with pytest.raises(UsageError, match=r"--metrics-out .*m.jsonl: the file exists and holds another "
                                         r"run's metrics; give a new file or remove it \(--resume continues that run only "
                                         r"with its --checkpoint-dir\)"):
        trainer(metrics_out=str(m))
    m.write_text("")
    trainer(metrics_out=str(m))                       # an empty file holds nobody's lines


def test_a_resumed_run_appends_to_its_metrics(tmp_path):
    m, d = tmp_path / "m.jsonl", tmp_path / "ck"
    trainer(metrics_out=str(m), checkpoint_dir=str(d), epochs=1).run()
    before = m.read_text().count("\n")
    trainer(metrics_out=str(m), checkpoint_dir=str(d), epochs=2, resume=True).run()
    assert m.read_text().count("\n") == 2 * before


def test_two_outputs_on_one_file_are_refused(tmp_path):
    with pytest.raises(UsageError, match="--metrics-out and --trace are the same file"):
        trainer(metrics_out=str(tmp_path / "x"), trace=str(tmp_path / "x"))


def test_a_metrics_write_that_fails_midway_is_one_line_exit_3(tmp_path, monkeypatch, capfd):
    from dptrain import cli
    from dptrain.train import metrics

    def write(self, kind, record):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "m.jsonl"))
    monkeypatch.setattr(metrics.MetricsWriter, "write", write)
    code = cli.main(["train", "--model", "mlp", "--dataset", "synthetic:1x8x8:120", "--quiet",
                     "--threads", "1", "--metrics-out", str(tmp_path / "m.jsonl"), "--max-steps", "2"])
    assert code == 3
    err = capfd.readouterr().err.strip().splitlines()
    assert err == [f"dptrain: failed: [Errno 28] No space left on device: '{tmp_path / 'm.jsonl'}'"]


def test_weights_holding_nan_are_refused(tmp_path):
    from dptrain import models
    from dptrain.train.setup import load_weights
    model = models.get("mlp", (1, 8, 8))
    state = model.state_dict()
    state["1.W"][0, 0] = np.nan
    np.savez(tmp_path / "w.npz", **state)
    with pytest.raises(UsageError, match=r"w.npz: array '1.W' holds NaN or infinite values"):
        load_weights(model, str(tmp_path / "w.npz"))


def test_weights_of_integers_are_refused(tmp_path):
    from dptrain import models
    from dptrain.train.setup import load_weights
    model = models.get("mlp", (1, 8, 8))
    np.savez(tmp_path / "w.npz", **{k: v.astype(np.int64) for k, v in model.state_dict().items()})
    with pytest.raises(UsageError, match=r"w.npz: array '1.W' is int64, not floating point"):
        load_weights(model, str(tmp_path / "w.npz"))


def test_weights_temporary_of_a_killed_run_is_swept(tmp_path):
    w = tmp_path / "w.npz"
    stale, live = tmp_path / f"w.npz.tmp.{dead_pid()}.npz", tmp_path / f"w.npz.tmp.{os.getpid()}.npz"
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    trainer(save_weights=str(w))
    assert not stale.exists() and live.exists()


def test_a_fresh_run_into_another_runs_checkpoints_is_refused(tmp_path):
    d = tmp_path / "ck"
    trainer(checkpoint_dir=str(d), max_steps=2).run()
    with pytest.raises(UsageError, match=rf"--checkpoint-dir {d} holds checkpoints of another run "
                                         r"\(ckpt-000000002.npz\); add --resume to continue it"):
        trainer(checkpoint_dir=str(d), max_steps=4, optimizer="adam")
    assert [p.name for p in checkpoint.list_checkpoints(d)] == ["ckpt-000000002.npz"]
