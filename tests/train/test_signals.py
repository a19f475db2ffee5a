"""SIGTERM / SIGINT at any time: during start-up, evaluation, a checkpoint write and after the
last step, the command ends cleanly (one line, no traceback, a documented code) and leaves
nothing half-written. The signal is sent to this process at the chosen moment."""
import json
import os
import signal

import numpy as np
import pytest

from dptrain import cli
from dptrain.train import checkpoint, lock

ARGS = ["train", "--model", "mlp", "--dataset", "synthetic:1x8x8:120", "--batch-size", "24",
        "--threads", "1", "--quiet"]


@pytest.fixture(autouse=True)
def restore_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def signal_once(monkeypatch, owner, name, signum, times=1):
    """Send ``signum`` to this process (``times`` times) when ``owner.name`` is first called."""
    real = getattr(owner, name)
    sent = []

    def wrapper(*a, **kw):
        if not sent:
            sent.append(1)
            for _ in range(times):
                os.kill(os.getpid(), signum)
        return real(*a, **kw)
    monkeypatch.setattr(owner, name, wrapper)


def one_line(capfd) -> str:
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_start_up(tmp_path, monkeypatch, capfd, signum):
    from dptrain import data
    signal_once(monkeypatch, data, "load", signum)
    d = tmp_path / "ck"
    code = cli.main(ARGS + ["--checkpoint-dir", str(d), "--metrics-out", str(tmp_path / "m.jsonl")])
    assert code == 128 + signum
    assert one_line(capfd) == f"dptrain: interrupted by {signal.Signals(signum).name}"
    assert not (tmp_path / "m.jsonl").exists() and not (d / lock.LOCK_NAME).exists()


def test_signal_during_evaluation_stops_after_the_next_step_with_a_checkpoint(tmp_path, monkeypatch, capfd):
    from dptrain.train.epoch_report import EpochReport
    signal_once(monkeypatch, EpochReport, "evaluate_test", signal.SIGTERM)
    d = tmp_path / "ck"
    code = cli.main(ARGS + ["--epochs", "5", "--checkpoint-dir", str(d)])
    assert code == 0
    line = one_line(capfd)
    assert line == "dptrain: stopped by a signal after step 5; checkpoint written"   # 4 steps an epoch
    assert checkpoint.read(checkpoint.list_checkpoints(d)[-1])["meta"]["step"] == 5
    assert not (d / lock.LOCK_NAME).exists()


def test_signal_after_the_last_step_lets_the_run_finish_its_outputs(tmp_path, monkeypatch, capfd):
    from dptrain.train.epoch_report import EpochReport
    signal_once(monkeypatch, EpochReport, "evaluate_test", signal.SIGTERM)
    m, w = tmp_path / "m.jsonl", tmp_path / "w.npz"
    code = cli.main(ARGS + ["--epochs", "1", "--metrics-out", str(m), "--save-weights", str(w)])
    assert code == 0
    assert capfd.readouterr().err == ""
    assert len(m.read_text().splitlines()) == 3 and all(json.loads(x) for x in m.read_text().splitlines())
    with np.load(w) as z:
        assert "1.W" in z.files
    assert sorted(os.listdir(tmp_path)) == ["m.jsonl", "w.npz"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_second_signal_during_a_checkpoint_write_leaves_the_previous_intact(tmp_path, monkeypatch,
                                                                            capfd, signum):
    """The exit code is that of the signal received: 130 for SIGINT, 143 for SIGTERM."""
    d = tmp_path / "ck"
    assert cli.main(ARGS + ["--epochs", "1", "--checkpoint-dir", str(d)]) == 0
    signal_once(monkeypatch, checkpoint.np, "savez", signum, times=2)
    code = cli.main(ARGS + ["--epochs", "3", "--checkpoint-dir", str(d), "--resume"])
    assert code == 128 + signum
    assert capfd.readouterr().err.strip().splitlines()[-1] == \
        f"dptrain: interrupted by {signal.Signals(signum).name}"
    assert [p.name for p in checkpoint.list_checkpoints(d)] == ["ckpt-000000004.npz"]
    assert checkpoint.read(d / "ckpt-000000004.npz")["meta"]["step"] == 4
    assert not list(d.glob(".ckpt-*")) and not (d / lock.LOCK_NAME).exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_inside_an_import_that_wraps_it_is_an_interruption(monkeypatch, capfd, signum):
    """numpy turns an exception raised inside its C extensions' import into an ImportError
    (test_faults.py saw it 1 time in 10 under load: Ctrl-C while numpy imports): reported as
    the interruption it is, once, with its code, not as a failed rank."""
    def importing_numpy():
        try:
            os.kill(os.getpid(), signum)
            sum(range(1000))                      # the handler runs here
        except BaseException as exc:
            raise ImportError("Importing the numpy C-extensions failed.") from exc
        raise AssertionError("the signal was not acted on")
    monkeypatch.setattr(cli, "build_parser", importing_numpy)
    assert cli.main(ARGS) == 128 + signum
    assert one_line(capfd) == f"dptrain: interrupted by {signal.Signals(signum).name}"
