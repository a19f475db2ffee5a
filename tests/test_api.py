"""dptrain.fit in one process: it trains what ``dptrain train`` trains (bitwise, same flags),
takes options, config files and a script's arrays, and ends as the command does: one line
and JobEnded(2) for bad input, JobEnded(3) for a failure, a signal stops it after the step
with a checkpoint. The script's own signal handlers are back afterwards."""
import json
import os
import re
import signal

import numpy as np
import pytest

import dptrain
from dptrain import cli, data
from dptrain.train.trainer import Trainer


@pytest.fixture
def arrays():
    rng = np.random.default_rng(3)
    x = rng.random((96, 1, 6, 6), dtype=np.float32)
    y = np.arange(96) % 3
    return x, y


def quick(**extra):
    return {**dict(batch_size=16, max_steps=4, quiet=True, seed=5), **extra}


def lines_of(capfd):
    return capfd.readouterr().err.strip().splitlines()


def test_train_returns_the_result_and_writes_the_outputs(tmp_path, arrays):
    result = dptrain.fit(model="mlp", dataset=arrays, **quick(
        metrics_out=str(tmp_path / "m.jsonl"), checkpoint_dir=tmp_path / "ck",
        checkpoint_every=2, save_weights=tmp_path / "w.npz"))
    assert isinstance(result, dptrain.TrainResult)
    assert (result.step, result.rank, result.ranks, result.stopped) == (4, 0, 1, None)
    assert result.metrics["steps"] == 4 and 0 <= result.metrics["test_accuracy"] <= 1
    assert all(type(v) in (int, float) for v in result.metrics.values()), result.metrics
    assert result.checkpoint == str(tmp_path / "ck" / "ckpt-000000004.npz")
    assert sorted(os.listdir(tmp_path / "ck")) == ["ckpt-000000002.npz", "ckpt-000000004.npz"]
    assert result.config.dataset == "arrays:default" and result.config.batch_size == 16
    first = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[0])
    assert first["type"] == "run" and first["config"]["model"] == "mlp"
    # the trained replica is returned: its weights are those saved
    saved = np.load(tmp_path / "w.npz")
    for name, value in result.model.state_dict().items():
        np.testing.assert_array_equal(saved[name], value)


def test_train_computes_what_the_command_computes(tmp_path, arrays):
    """The same flags through the command line and through the API give the same weights,
    bit for bit: one code path."""
    x, y = arrays
    np.savez(tmp_path / "d.npz", x=x, y=y)
    flags = ["train", "--model", "mlp", "--dataset", f"npz:{tmp_path / 'd.npz'}",
             "--batch-size", 16, "--max-steps", 4, "--quiet", "--seed", 5, "--optimizer", "adam",
             "--save-weights", tmp_path / "cli.npz"]
    assert cli.main(flags) == 0
    dptrain.fit(model="mlp", dataset=(x, y), optimizer="adam",
                  save_weights=str(tmp_path / "api.npz"), **quick())
    by_cli, by_api = np.load(tmp_path / "cli.npz"), np.load(tmp_path / "api.npz")
    assert sorted(by_cli.files) == sorted(by_api.files)
    for name in by_cli.files:
        np.testing.assert_array_equal(by_api[name], by_cli[name], err_msg=name)


def test_config_file_then_options_win(tmp_path, arrays):
    cfg = tmp_path / "run.toml"
    cfg.write_text('model = "lenet5"\noptimizer = "sgd"\nbatch_size = 32\nmax_steps = 2\n')
    result = dptrain.fit(model="mlp", dataset=arrays, config=str(cfg), batch_size=np.int64(8),
                           quiet=True)
    assert (result.config.model, result.config.optimizer) == ("mlp", "sgd")
    assert result.config.batch_size == 8 and result.step == 2


def test_a_registered_dataset_and_a_dataset_object(arrays):
    spec = data.register(*arrays, name="mine")
    assert spec == "arrays:mine" and data.load(spec).num_classes == 3
    assert dptrain.fit(model="mlp", dataset=spec, **quick()).config.dataset == "arrays:mine"
    ds = data.from_arrays(*arrays)
    assert dptrain.fit(model="mlp", dataset=ds, **quick()).step == 4


@pytest.mark.parametrize("call,line", [
    (dict(batchsize=16), "dptrain: error: fit(): unknown option 'batchsize' (did you mean "
                         "batch_size?)"),
    (dict(batch_size=0), "dptrain: error: --batch-size must be positive, got 0"),
    (dict(batch_size="16"), "dptrain: error: fit(batch_size=...) must be a number, got '16'"),
    (dict(model=3), "dptrain: error: fit(model=...): expected a model name, 'FILE.py:NAME' or "
                    "a builder callable, got int"),
    (dict(dataset=(1, 2, 3)), "dptrain: error: fit(dataset=...): expected a data-set name, "
                              "(x, y), (x, y, x_test, y_test), a dict of those arrays or a "
                              "dptrain.data.Dataset; got tuple of 3"),
    (dict(dataset="arrays:nowhere"), "dptrain: error: --dataset arrays:nowhere: no arrays are "
                                     "registered under this name in this process"),
    (dict(config="missing.toml"), "dptrain: error: missing.toml: no such config file"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capfd, arrays, call, line):
    kwargs = dict(model="mlp", dataset=arrays, **quick(metrics_out=str(tmp_path / "m.jsonl")))
    kwargs.update(call)
    with pytest.raises(dptrain.JobEnded) as ended:
        dptrain.fit(**kwargs)
    assert ended.value.code == 2
    err = lines_of(capfd)
    assert len(err) == 1 and err[0].startswith(line), err
    assert not (tmp_path / "m.jsonl").exists()


def test_bad_arrays_name_the_array(capfd, arrays):
    x, y = arrays
    x = x.copy()
    x[7, 0, 2, 2] = np.inf
    with pytest.raises(dptrain.JobEnded) as ended:
        dptrain.fit(model="mlp", dataset=(x, y), **quick())
    assert ended.value.code == 2
    assert lines_of(capfd) == ["dptrain: error: arrays:default images: sample 7 has a non-finite "
                               "pixel value (inf)"]


def test_a_failure_during_training_is_exit_3(monkeypatch, capfd, arrays):
    monkeypatch.setenv("DPTRAIN_FAULT", "raise:0:2")
    with pytest.raises(dptrain.JobEnded) as ended:
        dptrain.fit(model="mlp", dataset=arrays, **quick())
    assert ended.value.code == 3
    err = lines_of(capfd)
    assert len(err) == 1 and err[0].startswith("dptrain: rank 0 failed at step 2:"), err


def test_a_signal_stops_after_the_step_with_a_checkpoint(tmp_path, monkeypatch, arrays):
    """SIGTERM during training (a scheduler's time limit): the step finishes, a checkpoint is
    written, train returns with ``stopped``; the script's own handler is back afterwards."""
    original = Trainer.train_step

    def step_then_signal(self, *args, **kwargs):
        if self.step == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, *args, **kwargs)
    monkeypatch.setattr(Trainer, "train_step", step_then_signal)
    mine = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: mine.append(signum))
    try:
        result = dptrain.fit(model="mlp", dataset=arrays, checkpoint_dir=str(tmp_path / "ck"),
                               **quick(max_steps=50))
        stopped = re.fullmatch(r"dptrain: stopped by a signal after step (\d+); checkpoint "
                               r"written", result.stopped or "")
        assert stopped and result.step == int(stopped.group(1)) < 50, result
        assert result.checkpoint.endswith(f"ckpt-{result.step:09d}.npz"), result
        os.kill(os.getpid(), signal.SIGTERM)
        assert mine == [signal.SIGTERM]             # the script's handler, not dptrain's
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_before_training_is_exit_130(monkeypatch, capfd, arrays):
    """Ctrl-C while the run starts (data loading, model building) ends it as the command does."""
    from dptrain.train import local_setup
    original = local_setup.prepare

    def interrupted_prepare(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        return original(*args, **kwargs)
    monkeypatch.setattr(local_setup, "prepare", interrupted_prepare)
    monkeypatch.setattr("dptrain.train.trainer.prepare", interrupted_prepare)
    with pytest.raises(dptrain.JobEnded) as ended:
        dptrain.fit(model="mlp", dataset=arrays, **quick())
    assert ended.value.code == 130
    assert lines_of(capfd) == ["dptrain: interrupted by SIGINT"]


def build_mlp(input_shape, num_classes):
    """A script's own builder: here the zoo's mlp layers, so the result can be compared."""
    from dptrain.models import zoo
    return zoo.mlp(input_shape, num_classes)


def test_a_builder_callable_trains_as_the_zoo_model(tmp_path, arrays):
    own = dptrain.fit(model=build_mlp, dataset=arrays, save_weights=str(tmp_path / "own.npz"),
                      **quick())
    assert own.config.model.endswith(":build_mlp"), own.config.model
    dptrain.fit(model="mlp", dataset=arrays, save_weights=str(tmp_path / "zoo.npz"), **quick())
    a, b = np.load(tmp_path / "own.npz"), np.load(tmp_path / "zoo.npz")
    assert sorted(a.files) == sorted(b.files)
    for name in a.files:
        if name != "meta":              # which model the weights are of: the reference, the zoo
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_handlers_are_restored_after_an_error(arrays):
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(dptrain.JobEnded):
        dptrain.fit(model="mlp", dataset=arrays, batch_size=-1, quiet=True)
    assert signal.getsignal(signal.SIGINT) is before


def test_from_arrays_checks_and_holds_out_a_fifth(arrays):
    x, y = arrays
    ds = data.from_arrays(x, y, name="mine")
    assert (len(ds.x_train), len(ds.x_test), ds.num_classes) == (77, 19, 3)
    assert abs(float(ds.x_train.mean())) < 1e-5           # normalised by the training split
    ds = data.from_arrays(x[:80], y[:80], x[80:], y[80:], num_classes=5)
    assert (len(ds.x_test), ds.num_classes) == (16, 5)
    with pytest.raises(data.DataError, match="mine labels: labels must be integer class ids"):
        data.from_arrays(x, y.astype(str), name="mine")
    with pytest.raises(data.DataError, match="x_test and y_test must come together"):
        data.from_arrays(x, y, x_test=x)


def test_start_up_time_counts_from_the_process_start(tmp_path):
    """The start-up deadline allows twice a rank's own start-up time (phase_watch.py); for a
    script, what it did before fit (reading its data, here a sleep) is part of it."""
    import subprocess
    import sys
    script = tmp_path / "late.py"
    script.write_text(
        "import time; time.sleep(1.0)\n"
        "import numpy as np, dptrain\n"
        "from dptrain import phase_watch\n"
        "x, y = np.random.default_rng(0).random((40, 1, 4, 4)), np.arange(40) % 2\n"
        "dptrain.fit(model='mlp', dataset=(x, y), batch_size=8, max_steps=1, quiet=True)\n"
        "print(time.monotonic() - phase_watch.STARTED)\n")
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, check=True)
    assert float(out.stdout.split()[-1]) >= 1.0, out.stdout


def build_that_raises(input_shape, num_classes):
    raise RuntimeError("no model today")


@pytest.mark.parametrize("debug", [False, True])
def test_a_builder_that_raises_is_exit_2_naming_its_line(capfd, arrays, debug):
    """A script's own builder fails as a model file does: one line naming the file and line,
    the traceback above it with debug=True (--debug)."""
    with pytest.raises(dptrain.JobEnded) as ended:
        dptrain.fit(model=build_that_raises, dataset=arrays, debug=debug, **quick())
    assert ended.value.code == 2
    err = lines_of(capfd)
    assert err[-1].startswith(f"dptrain: error: {__file__}:"), err
    assert "raised RuntimeError: no model today" in err[-1], err
    assert (len(err) > 1 and err[0].startswith("Traceback")) if debug else len(err) == 1, err
