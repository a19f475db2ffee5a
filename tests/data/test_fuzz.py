"""Seeded fuzzing of every reader and, for a handful of cases, the command line.

Valid files are mutated (truncation, bit flips, inserted and overwritten bytes, extreme
header values) and npz files are generated with wrong dtypes, shapes and extreme values.
Every input must either load or raise the reader's own error (DataError, CheckpointError,
UsageError), which the command line turns into exit 2 and one line; any other exception
is a bug. Bounded: a fixed number of cases per reader, a few seconds in all.
"""
import gzip
import io
import json
import pickle
import struct

import numpy as np
import pytest

from dptrain import data
from dptrain.data import cifar
from dptrain.data.readers import DataError, read_idx
from dptrain.errors import UsageError
from dptrain.train import checkpoint
from dptrain.train.config import TrainConfig, load_toml

CASES = 150
ALLOWED = (DataError, checkpoint.CheckpointError, UsageError)


def mutate(raw: bytes, rng) -> bytes:
    b = bytearray(raw)
    kind = rng.integers(0, 5)
    if kind == 0 and b:                                     # truncation
        return bytes(b[:rng.integers(0, len(b))])
    if kind == 1 and b:                                     # bit flips
        for _ in range(rng.integers(1, 9)):
            i = int(rng.integers(0, len(b)))
            b[i] ^= 1 << int(rng.integers(0, 8))
        return bytes(b)
    if kind == 2:                                           # inserted bytes
        i = int(rng.integers(0, len(b) + 1))
        return bytes(b[:i]) + rng.bytes(int(rng.integers(1, 64))) + bytes(b[i:])
    if kind == 3 and len(b) > 8:                            # extreme values in the first bytes
        i = int(rng.integers(0, min(len(b) - 4, 64)))
        b[i:i + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"])
        return bytes(b)
    return rng.bytes(int(rng.integers(0, 256)))             # noise


def check_each(inputs, read, tmp_path, name):
    path = tmp_path / name
    for raw in inputs:
        path.write_bytes(raw)
        try:
            read(path)
        except ALLOWED as exc:
            assert str(exc) and "\n" not in str(exc), repr(exc)
        except Exception as exc:                            # the failure is the input that made it
            pytest.fail(f"{type(exc).__name__}: {exc} on input {raw[:80]!r}... ({len(raw)} bytes)")


def idx_file(rng):
    a = rng.integers(0, 256, (4, 6, 5))
    return bytes([0, 0, 0x08, 3]) + struct.pack(">III", *a.shape) + a.astype(np.uint8).tobytes()


@pytest.mark.parametrize("compress", [False, True])
def test_idx_reader(tmp_path, compress):
    rng = np.random.default_rng(1 + compress)
    valid = idx_file(rng)
    inputs = [mutate(gzip.compress(valid) if compress else valid, rng) for _ in range(CASES)]
    check_each(inputs, read_idx, tmp_path, "f.idx")


def cifar_batch(rng, protocol):
    d = {b"batch_label": b"b", b"labels": [int(v) for v in rng.integers(0, 10, 3)],
         b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8), b"filenames": [b"a"] * 3}
    return pickle.dumps(d, protocol=protocol)


def test_cifar_python_batch(tmp_path):
    rng = np.random.default_rng(3)
    inputs = [mutate(cifar_batch(rng, int(rng.choice([2, 4, 5]))), rng) for _ in range(CASES)]
    check_each(inputs, cifar.read_python_batch, tmp_path, "data_batch_1")


def test_cifar_binary_batch(tmp_path):
    rng = np.random.default_rng(4)
    valid = rng.integers(0, 256, 3 * 3073, dtype=np.uint8).tobytes()
    check_each([mutate(valid, rng) for _ in range(CASES)], cifar.read_binary_batch, tmp_path, "b.bin")


def npz_bytes(arrays) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def random_array(rng, n):
    dtype = rng.choice(["uint8", "int64", "float16", "float32", "float64", "complex64", "bool", "<U2"])
    ndim = int(rng.integers(0, 6))
    shape = tuple(int(v) for v in rng.integers(0, 5, ndim))
    if ndim and rng.random() < 0.7:
        shape = (n,) + shape[1:]
    values = rng.choice([0.0, 1.0, -1.0, 255.0, 256.0, 1e300, np.nan, np.inf, -np.inf, 99.0, 2.0 ** 62],
                        size=shape)
    with np.errstate(invalid="ignore", over="ignore"):
        return values.astype(dtype) if dtype != "<U2" else values.astype(str)


def test_npz_data_sets(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "a.npz"
    good = {"x": rng.random((20, 1, 4, 4)), "y": np.arange(20) % 3}
    for i in range(CASES):
        if i % 3 == 0:
            raw = mutate(npz_bytes(good), rng)
        else:
            n = int(rng.integers(0, 30))
            arrays = dict(good)
            for key in rng.choice(["x", "y", "x_test", "y_test"], size=int(rng.integers(1, 3))):
                arrays[str(key)] = random_array(rng, n)
            raw = npz_bytes(arrays)
        path.write_bytes(raw)
        try:
            data.load(f"npz:{path}")
        except DataError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:
            with np.load(path) as z:
                shown = {k: (z[k].dtype, z[k].shape) for k in z.files}
            pytest.fail(f"{type(exc).__name__}: {exc} on arrays {shown}")


def test_checkpoint_reader(tmp_path):
    from dptrain.comm.local import LocalCommunicator
    from dptrain.train import Trainer
    rng = np.random.default_rng(6)
    t = Trainer(TrainConfig(model="mlp", dataset="synthetic:1x4x4:40", batch_size=8, quiet=True,
                            checkpoint_dir=str(tmp_path / "ck"), max_steps=1), comm=LocalCommunicator())
    t.run()
    valid = checkpoint.list_checkpoints(tmp_path / "ck")[-1].read_bytes()
    check_each([mutate(valid, rng) for _ in range(CASES // 3)], checkpoint.read, tmp_path, "ckpt.npz")


def test_config_files(tmp_path):
    rng = np.random.default_rng(7)
    valid = b'model = "mlp"\nlr = 0.1\nepochs = 3\nbatch-size = 16\n[train]\nmomentum = 0.5\n'
    extremes = [b"lr = nan\n", b"lr = inf\n", b"epochs = 99999999999999999999\n", b"seed = -1\n",
                b"batch_size = 1e400\n", b"momentum = [1, 2]\n", b"comm_timeout = -inf\n"]
    inputs = [mutate(valid, rng) for _ in range(CASES)] + extremes

    def read(path):
        TrainConfig(**load_toml(path)).validate()
    check_each(inputs, read, tmp_path, "c.toml")


def test_metrics_and_trace_files_for_plot(tmp_path):
    from dptrain.plot import plot_metrics, plot_trace
    pytest.importorskip("matplotlib")
    rng = np.random.default_rng(8)
    metrics = b"".join(json.dumps({"epoch": e, "step": e, "loss": 1.0 / e, "accuracy": 0.5,
                                   "lr": 0.1}).encode() + b"\n" for e in (1, 2))
    trace = json.dumps({"traceEvents": [{"name": "fwd", "ph": "X", "ts": 0, "dur": 5, "pid": 0,
                                         "tid": 0}]}).encode()
    out = tmp_path / "o.png"
    check_each([mutate(metrics, rng) for _ in range(20)], lambda p: plot_metrics(p, out), tmp_path, "m.jsonl")
    check_each([mutate(trace, rng) for _ in range(20)], lambda p: plot_trace(p, out), tmp_path, "t.json")


@pytest.mark.parametrize("seed", range(4))
def test_command_line_on_mutated_data(tmp_path, seed):
    """A few end-to-end cases: exit 0, or exit 2 with exactly one line."""
    from test_cli import dptrain
    rng = np.random.default_rng(100 + seed)
    path = tmp_path / "d.npz"
    arrays = {"x": rng.random((40, 1, 6, 6)), "y": np.arange(40) % 4}
    arrays[str(rng.choice(["x", "y"]))] = random_array(rng, 40)
    path.write_bytes(npz_bytes(arrays) if seed % 2 else mutate(npz_bytes(arrays), rng))
    res = dptrain("train", "--model", "mlp", "--dataset", f"npz:{path}", "--max-steps", 1,
                  "--batch-size", 8, "--quiet", timeout=120)
    assert res.returncode in (0, 2), res.stderr
    if res.returncode == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dptrain: error: "), res.stderr


def test_train_flags_with_random_values():
    """Every train flag given a random value: parsing, config and validation end in a config
    or a UsageError (exit 2, one line), never in another exception."""
    from dptrain.cli import build_parser, train_config
    rng = np.random.default_rng(9)
    parser = build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    flags = [a.option_strings[-1] for a in train._actions
             if a.option_strings and a.nargs != 0 and a.dest not in ("help", "config")]
    pool = ["0", "-1", "1", "2.5", "nan", "inf", "-inf", "1e308", "99999999999999999999", "",
            "abc", "none", "1e", "0e", "-0", "\u00e9", "3x", "bw=nan", "auto"]
    for _ in range(CASES * 3):
        argv = ["train"]
        for flag in rng.choice(flags, size=int(rng.integers(1, 4)), replace=False):
            argv += [str(flag), str(rng.choice(pool))]
        try:
            train_config(parser.parse_args(argv)).validate()
        except UsageError as exc:
            assert "\n" not in str(exc)
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc} for {argv}")
