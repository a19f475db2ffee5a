"""Crafted bad input of every kind is exit 2 with one line naming the culprit, never an internal
exception at some step (issue 20, kind 7): numeric flags at their extremes, network emulation
specs, data files with lying headers, checkpoint metadata, lock files and plot input."""
import dataclasses
import math

import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.errors import TrainingFailure, UsageError
from dptrain.train import Trainer
from dptrain.train.config import TrainConfig
from test_cli import assert_usage_error, dptrain

NUMERIC = [f.name for f in dataclasses.fields(TrainConfig)
           if str(f.type).split(" |")[0] in ("int", "float")]
TINY = dict(model="mlp", dataset="synthetic:1x4x4:60", batch_size=8, quiet=True, max_steps=3,
            epochs=1, sync="blocking")
# what makes each field take effect within three steps
CONTEXT = {"lr_gamma": {"lr_schedule": "step", "lr_step_size": 1},
           "lr_step_size": {"lr_schedule": "step"}, "max_steps": {"epochs": 1},
           "epochs": {"max_steps": 3}}


def context(name):
    extra = dict(CONTEXT.get(name, {}))
    if name.startswith("as_"):
        extra["sampler"] = "as"
    if name.startswith("obs_"):
        extra["sampler"] = "obs"
    return extra


def _kind(name):
    return str(TrainConfig.__dataclass_fields__[name].type).split(" |")[0]


# argparse and TOML give an int flag no float (refused by type anyway), a float flag any number
CASES = [(name, value) for name in NUMERIC for value in
         ([math.nan, math.inf, -1.0, 0.0, 1e300] if _kind(name) == "float" else [-1, 0, 2 ** 62])]


@pytest.mark.parametrize("name,value", CASES)
def test_every_numeric_setting_is_refused_naming_it_or_trains(name, value, tmp_path):
    """Refused up front, naming the flag, or a run that ends normally; no value gets through
    validation to fail inside training (--lr-gamma 1e300 overflowed at step 2). A huge --lr or
    --weight-decay diverges, which is the non-finite check's exit 3 (a training failure)."""
    cfg = {**TINY, **context(name), name: value}
    if name == "keep_checkpoints":
        cfg["checkpoint_dir"] = str(tmp_path / "ck")
    try:
        Trainer(TrainConfig(**cfg).validate(), comm=LocalCommunicator()).run()
    except TrainingFailure as exc:
        assert name in ("lr", "weight_decay") and value == 1e300 and "non-finite" in str(exc)
    except UsageError as exc:                # at validation, or at start-up against the data
        assert f"--{name.replace('_', '-')}" in str(exc) and "\n" not in str(exc), str(exc)


@pytest.mark.parametrize("argv,says", [
    (["--lr-gamma", "1e300", "--lr-schedule", "step", "--lr-step-size", "1"], "--lr-gamma"),
    (["--comm-timeout", "1e-300"], "--comm-timeout"),
    (["--comm-timeout", "1e300"], "--comm-timeout"),
    (["--net-emulate", "bw=1Gbit,lat=1e300s"], "lat=1e300s"),
    (["--net-emulate", "bw=1e-300bit,lat=1us"], "bw=1e-300bit"),
    (["--net-emulate", "bw=1Gbit,lat=1.2.3us"], "lat=1.2.3us"),
])
def test_absurd_flag_values_are_exit_2(argv, says):
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x8x8:200", "--max-steps", 3,
                  "--batch-size", 16, "--quiet", *argv, timeout=120)
    assert_usage_error(res, says)


# --- data files ----------------------------------------------------------------------------
def idx_bytes(shape, body=None, ndim=None):
    import struct
    head = bytes([0, 0, 0x08, len(shape) if ndim is None else ndim])
    return head + b"".join(struct.pack(">I", n) for n in shape) + (
        bytes(math.prod(shape)) if body is None else body)


def read_idx_error(path):
    from dptrain.data.readers import DataError, read_idx
    with pytest.raises(DataError) as exc:
        read_idx(path)
    assert str(exc.value).startswith(str(path)) and "\n" not in str(exc.value)
    return str(exc.value)


def test_idx_header_with_255_dimensions(tmp_path):
    path = tmp_path / "f.idx"
    path.write_bytes(idx_bytes((1,) * 255))            # numpy stops at 64: was a ValueError
    assert "255 dimensions" in read_idx_error(path)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_with_trailing_bytes_is_refused(tmp_path, compress):
    import gzip
    raw = idx_bytes((3, 2, 2)) + b"\x07" * 5
    path = tmp_path / "f.idx"
    path.write_bytes(gzip.compress(raw) if compress else raw)
    assert "after the data" in read_idx_error(path)


def test_gzip_idx_promising_more_than_it_holds_allocates_what_it_holds(tmp_path):
    """200 MB promised, 256 KB held (incompressible): refused as truncated, and never more
    than a few MB allocated on the way (one read(n) allocated all n at once)."""
    import gzip
    import os
    import tracemalloc
    path = tmp_path / "f.idx.gz"
    path.write_bytes(gzip.compress(idx_bytes((200, 1000, 1000), os.urandom(256 << 10))))
    tracemalloc.start()
    try:
        assert "truncated" in read_idx_error(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


def test_idx_promising_more_than_memory_is_refused_before_reading(tmp_path, monkeypatch):
    import gzip
    from dptrain.data import validate
    monkeypatch.setattr(validate, "available_memory", lambda: 1 << 20)
    path = tmp_path / "f.idx.gz"
    path.write_bytes(gzip.compress(idx_bytes((4, 1000, 1000))))
    assert "GiB of memory" in read_idx_error(path)


def test_synthetic_spec_with_extra_fields_is_exit_2():
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x28x28:100:junk",
                  "--max-steps", 1, "--quiet", timeout=120)
    assert_usage_error(res, "synthetic:1x28x28:100:junk")


# --- checkpoints ---------------------------------------------------------------------------
def checkpoint_with_meta(tmp_path, edit, sampler="uniform", arrays_edit=lambda arrays: None):
    """A real checkpoint of a 3-step run, its metadata changed by ``edit(meta)`` (its arrays
    by ``arrays_edit``)."""
    import json
    import numpy as np
    from dptrain.train import checkpoint
    directory = tmp_path / "ck"
    Trainer(TrainConfig(**{**TINY, "sampler": sampler, "checkpoint_dir": str(directory)}),
            comm=LocalCommunicator()).run()
    path = checkpoint.list_checkpoints(directory)[-1]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    edit(meta)
    arrays_edit(arrays)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return directory, path


def setter(*keys, value):
    def edit(meta):
        d = meta
        for k in keys[:-1]:
            d = d[k]
        if value is KeyError:
            del d[keys[-1]]
        else:
            d[keys[-1]] = value
    return edit


@pytest.mark.parametrize("keys,value,field", [
    (("step",), "7", "'step'"), (("step",), -3, "'step'"), (("step",), 2 ** 70, "'step'"),
    (("epoch",), None, "'epoch'"), (("pos",), KeyError, "'pos'"), (("pos",), 1.5, "'pos'"),
    (("config",), [1], "'config'"), (("sampler",), "x", "'sampler'"),
    (("optimizer",), 3, "'optimizer'"), (("optimizer", "name"), 5, "'optimizer.name'"),
    (("optimizer", "lr"), "fast", "'optimizer.lr'"), (("optimizer", "lr"), -1, "'optimizer.lr'"),
    (("optimizer", "weight_decay"), KeyError, "'optimizer.weight_decay'"),
    (("optimizer", "hyper"), [0.9], "'optimizer.hyper'"),
    (("optimizer", "hyper", "momentum"), "x", "'optimizer.hyper.momentum'"),
    (("optimizer", "t"), [], "'optimizer.t'"), (("optimizer", "t", "1.W"), -1, "'optimizer.t.1.W'"),
    (("comm_plan",), {"schedule": "overlap", "groups": "abc"}, "'comm_plan'"),
    (("comm_plan",), [1, 2], "'comm_plan'"),
])
def test_crafted_checkpoint_metadata_is_exit_2_naming_file_and_field(tmp_path, keys, value, field):
    directory, path = checkpoint_with_meta(tmp_path, setter(*keys, value=value))
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x4x4:60", "--batch-size", 8,
                  "--max-steps", 6, "--epochs", 1, "--sync", "blocking", "--quiet", "--resume",
                  "--checkpoint-dir", directory, timeout=120)
    assert_usage_error(res, str(path), field)


@pytest.mark.parametrize("key,value", [("sampler/losses", [1.0, 2.0]),
                                       ("sampler/losses", ["a"] * 48)])
def test_crafted_sampler_state_is_exit_2_naming_the_file(tmp_path, key, value):
    import numpy as np
    directory, path = checkpoint_with_meta(tmp_path, lambda meta: None, sampler="obs",
                                           arrays_edit=lambda a: a.update({key: np.array(value)}))
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x4x4:60", "--batch-size", 8,
                  "--max-steps", 6, "--epochs", 1, "--sync", "blocking", "--quiet", "--resume",
                  "--sampler", "obs", "--checkpoint-dir", directory, timeout=120)
    assert_usage_error(res, str(path))


# --- lock files ----------------------------------------------------------------------------
def _lock_json(**fields):
    import json
    import socket
    return json.dumps({"host": socket.gethostname(), **fields}).encode()


@pytest.mark.parametrize("content", [
    b"", b"zz{", b"\xff\xfe\x00" * 10, b"[" * 100000, b"[1, 2]", b" " * (1 << 20),
    _lock_json(pid=10 ** 30), _lock_json(pid=True), _lock_json(pid="12"), _lock_json(pid=-4),
    _lock_json(pid=1, start=[1]), b'{"pid": 1, "host": 7}',
], ids=["empty", "garbage", "binary", "deep", "array", "huge", "pid-huge", "pid-bool", "pid-str",
        "pid-negative", "start-list", "host-int"])
def test_garbled_lock_file_is_taken_over_with_one_warning(tmp_path, content):
    """A lock dptrain cannot have written (a killed writer, a stray file) names no live owner:
    taken over with a warning, as a dead owner's lock is; never an internal error."""
    directory = tmp_path / "ck"
    directory.mkdir()
    (directory / ".dptrain.lock").write_bytes(content)
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x4x4:60", "--batch-size", 8,
                  "--max-steps", 2, "--quiet", "--checkpoint-dir", directory, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("\n") == 1 and "taking over the lock of an unreadable lock" in res.stderr


def test_lock_naming_another_host_is_shown_on_one_line(tmp_path):
    import json
    directory = tmp_path / "ck"
    directory.mkdir()
    (directory / ".dptrain.lock").write_text(json.dumps(
        {"pid": 7, "host": "other\nhost", "command": "rm\n-rf", "started": "x" * 5000}))
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x4x4:60", "--max-steps", 2,
                  "--batch-size", 8, "--quiet", "--checkpoint-dir", directory, timeout=120)
    assert_usage_error(res, "is in use by pid 7", str(directory / ".dptrain.lock"))
    assert len(res.stderr) < 1000


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_lock_path_that_is_not_a_file_is_exit_2(tmp_path, kind):
    import os
    directory = tmp_path / "ck"
    directory.mkdir()
    lock = directory / ".dptrain.lock"
    lock.mkdir() if kind == "directory" else os.mkfifo(lock)
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x4x4:60", "--max-steps", 2,
                  "--batch-size", 8, "--quiet", "--checkpoint-dir", directory, timeout=60)
    assert_usage_error(res, str(lock))


# --- dptrain plot --------------------------------------------------------------------------
EPOCH = '{"type": "epoch", "epoch": 1, "step": 5, "loss": 0.5, "accuracy": 0.8}\n'


@pytest.mark.parametrize("content,says", [
    ("", "no epoch metrics"), ("notjson\n", "line 1: not JSON"),
    (EPOCH + "\n" + "[" * 100000 + "\n", "line 3: not JSON"),
    (EPOCH + "[1, 2]\n", "line 2: not a metrics record"),
    (EPOCH.replace('"epoch": 1', '"epoch": 1e308') , "line 1: 'epoch'"),
    (EPOCH.replace('"loss": 0.5', '"loss": -1'), "line 1: 'loss'"),
    (EPOCH.replace('"loss": 0.5', '"loss": "low"'), "line 1: 'loss'"),
    (EPOCH + EPOCH.replace('"accuracy": 0.8', '"accuracy": null'), "line 2: 'accuracy'"),
    (EPOCH.replace('"epoch": 1, ', ''), "line 1: 'epoch'"),
])
def test_malformed_metrics_for_plot_is_exit_2_naming_file_and_line(tmp_path, content, says):
    pytest.importorskip("matplotlib")
    path = tmp_path / "m.jsonl"
    path.write_text(content)
    res = dptrain("plot", path, "-o", tmp_path / "o.png", timeout=120)
    assert_usage_error(res, str(path), says)


@pytest.mark.parametrize("content", [
    "[" * 100000, "[1]", '{"a": 1}', '[{"ph": "X", "ts": 1e308, "dur": 1e308, "pid": 0}]',
    '[{"ph": "X", "ts": 1, "dur": 1, "pid": "zz"}]', '[{"ph": "X", "ts": 1, "dur": 1, "pid": [1]}]',
])
def test_file_that_is_not_a_trace_is_exit_2_naming_it(tmp_path, content):
    pytest.importorskip("matplotlib")
    path = tmp_path / "t.json"
    path.write_text(content)
    res = dptrain("plot", "--trace", path, "-o", tmp_path / "o.png", timeout=120)
    assert_usage_error(res, str(path))


# --- dptrain bench and eval ----------------------------------------------------------------
@pytest.mark.parametrize("argv,says", [
    (["--model", "mlp", "--batch-size", "99999999999", "--steps", "1"], "--batch-size 99999999999"),
    (["--model", "mlp", "--batch-sizes", "64,99999999999"], "--batch-sizes 99999999999"),
    (["--model", "mlp", "--steps", "99999999999999999999"], "--steps"),
    (["--model", "mlp", "--rounds", "10000000"], "--rounds"),
    (["--predict", "--model", "mlp", "--net", "bw=zz"], "--net: cannot read 'bw=zz'"),
    (["--ranks", "2", "--net-emulate", "lat=1e300s,bw=1Gbit"], "lat=1e300s"),
])
def test_bench_input_is_checked_before_measuring(argv, says):
    """A MemoryError at the first allocation, a ValueError from the network spec (exit 3), or
    a run of 10^20 steps: refused up front instead."""
    res = dptrain("bench", *argv, timeout=120)
    assert_usage_error(res, says)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"\x93NUMPY" + b"\xff" * 100])
def test_eval_of_weights_that_are_not_weights_is_exit_2(tmp_path, content):
    path = tmp_path / "w.npz"
    path.write_bytes(content)
    res = dptrain("eval", "--model", "mlp", "--weights", path, "--dataset", "synthetic:1x8x8:100",
                  timeout=120)
    assert_usage_error(res, str(path))


# --- the battery: one crafted file of each kind through the command line ---------------------
class _Payload:
    """Unpickling this runs a shell command that leaves a marker file: it must never run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        import os
        return os.system, (f"touch {self.marker}",)


def _mnist_dir(tmp_path, images: bytes):
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "train-images-idx3-ubyte").write_bytes(images)
    (d / "train-labels-idx1-ubyte").write_bytes(idx_bytes((4,)))
    (d / "t10k-images-idx3-ubyte").write_bytes(idx_bytes((4, 28, 28)))
    (d / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes((4,)))
    return d


def _craft(kind, tmp_path, marker):
    """(argv, the file the line must name) for one crafted file of ``kind``."""
    import gzip
    import pickle
    import numpy as np
    train = ["train", "--model", "mlp", "--max-steps", "1", "--quiet"]
    if kind == "idx-255-dims":
        d = _mnist_dir(tmp_path, idx_bytes((1,) * 255))
        return train + ["--dataset", f"mnist:{d}"], d / "train-images-idx3-ubyte"
    if kind == "idx-trailing":
        d = _mnist_dir(tmp_path, idx_bytes((4, 28, 28)) + b"junk")
        return train + ["--dataset", f"mnist:{d}"], d / "train-images-idx3-ubyte"
    if kind == "idx-gz-promise":
        d = _mnist_dir(tmp_path, b"")
        (d / "train-images-idx3-ubyte").unlink()
        path = d / "train-images-idx3-ubyte.gz"
        path.write_bytes(gzip.compress(idx_bytes((60000, 1000, 1000), b"\0" * 1000)))
        return train + ["--dataset", f"mnist:{d}"], path
    if kind == "cifar-pickle-payload":
        d = tmp_path / "cifar"
        d.mkdir()
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            (d / name).write_bytes(pickle.dumps({b"data": _Payload(marker), b"labels": [0]}))
        return train + ["--dataset", f"cifar10:{d}"], d / "data_batch_1"
    if kind == "npz-object-payload":
        path = tmp_path / "d.npz"
        np.savez(path, x=np.array([_Payload(marker)], dtype=object), y=np.arange(1))
        return train + ["--dataset", f"npz:{path}"], path
    if kind == "config-not-toml":
        path = tmp_path / "c.toml"
        path.write_bytes(b"epochs = = 3\n\xff")
        return train + ["--config", str(path)], path
    if kind == "checkpoint-meta":
        directory, path = checkpoint_with_meta(tmp_path, setter("step", value="x"))
        return train[:-3] + ["--dataset", "synthetic:1x4x4:60", "--batch-size", "8", "--epochs",
                             "1", "--sync", "blocking", "--quiet", "--resume",
                             "--checkpoint-dir", str(directory)], path
    if kind == "weights-object-payload":
        path = tmp_path / "w.npz"
        np.savez(path, **{"1.W": np.array([_Payload(marker)], dtype=object)})
        return ["eval", "--model", "mlp", "--weights", str(path), "--dataset",
                "synthetic:1x8x8:100"], path
    if kind == "plot-metrics":
        path = tmp_path / "m.jsonl"
        path.write_text(EPOCH + '{"type": "epoch", "epoch": 2, "loss": [], "accuracy": 1}\n')
        return ["plot", str(path), "-o", str(tmp_path / "o.png")], path
    if kind == "plot-trace":
        path = tmp_path / "t.json"
        path.write_text('{"traceEvents": 5}')
        return ["plot", "--trace", str(path), "-o", str(tmp_path / "o.png")], path
    if kind == "lock-directory":
        directory = tmp_path / "ck"
        (directory / ".dptrain.lock").mkdir(parents=True)
        return train + ["--dataset", "synthetic:1x4x4:60", "--batch-size", "8",
                        "--checkpoint-dir", str(directory)], directory / ".dptrain.lock"
    raise AssertionError(kind)


KINDS = ["idx-255-dims", "idx-trailing", "idx-gz-promise", "cifar-pickle-payload",
         "npz-object-payload", "config-not-toml", "checkpoint-meta", "weights-object-payload",
         "plot-metrics", "plot-trace", "lock-directory"]


@pytest.mark.parametrize("kind", KINDS)
def test_crafted_file_battery(tmp_path, kind):
    """Each kind of crafted file: exit 2 and one line naming the file, no traceback, within
    a minute, and nothing in it executed."""
    import time
    if kind.startswith("plot"):
        pytest.importorskip("matplotlib")
    marker = tmp_path / "executed"
    argv, path = _craft(kind, tmp_path, marker)
    start = time.monotonic()
    res = dptrain(*argv, timeout=120)
    assert time.monotonic() - start < 60
    assert_usage_error(res, str(path))
    assert not marker.exists()


@pytest.mark.parametrize("make", ["endless", "deep"])
def test_config_that_never_ends_or_nests_too_deeply_is_exit_2(tmp_path, make):
    """--config /dev/zero was read until memory ran out (killed); deep TOML nesting was a
    RecursionError."""
    path = "/dev/zero" if make == "endless" else tmp_path / "c.toml"
    if make == "deep":
        path.write_text("a = " + "[" * 100000 + "\n")
    res = dptrain("train", "--config", path, "--max-steps", 1, "--quiet", timeout=60)
    assert_usage_error(res, str(path))


def test_config_from_an_endless_pipe_is_exit_2(tmp_path):
    """A --config pipe whose writer never stops (`<(yes)`) is read up to the size limit and
    refused, not read until memory runs out."""
    import subprocess
    import sys
    script = (f'exec "{sys.executable}" -m dptrain.cli train --config <(yes) '
              '--max-steps 1 --quiet')
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60,
                         cwd=tmp_path)
    assert_usage_error(res, "--config", "larger than")
