"""A FIFO (or any file that is not a regular file) named as input is refused at once with exit 2
naming it, instead of blocking for ever in open(); a --config given as a pipe is read."""
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from dptrain.train import checkpoint

DEADLINE_S = 30            # far beyond what a refusal takes; a blocked open() never ends


def dptrain(*args, cwd=None):
    """(returncode, stderr) of one process, failing the test if it outlives DEADLINE_S."""
    t0 = time.time()
    try:
        res = subprocess.run([sys.executable, "-m", "dptrain.cli", *map(str, args)],
                             capture_output=True, text=True, timeout=DEADLINE_S, cwd=cwd)
    except subprocess.TimeoutExpired:
        pytest.fail(f"still running after {DEADLINE_S} s: blocked on the FIFO")
    return res.returncode, res.stderr, time.time() - t0


TRAIN = ["train", "--model", "mlp", "--batch-size", 16, "--max-steps", 2, "--quiet"]


def assert_refused(code, err, path):
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dptrain: error:"), err
    assert f"{path}: not a regular file (a FIFO)" in lines[0], err


def test_npz_fifo(tmp_path):
    os.mkfifo(tmp_path / "data.npz")
    code, err, _ = dptrain(*TRAIN, "--dataset", f"npz:{tmp_path / 'data.npz'}")
    assert_refused(code, err, tmp_path / "data.npz")


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "train-images-idx3-ubyte.gz"])
def test_mnist_fifo(tmp_path, name):
    os.mkfifo(tmp_path / name)            # the first file read; the others are never reached
    for stem in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (tmp_path / stem).write_bytes(b"")
    code, err, _ = dptrain(*TRAIN, "--dataset", f"mnist:{tmp_path}")
    assert_refused(code, err, tmp_path / name)


def test_cifar_fifo(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        os.mkfifo(d / name) if name == "data_batch_1" else (d / name).write_bytes(b"")
    code, err, _ = dptrain(*TRAIN, "--dataset", f"cifar10:{tmp_path}")
    assert_refused(code, err, d / "data_batch_1")


def test_weights_fifo(tmp_path):
    os.mkfifo(tmp_path / "w.npz")
    code, err, _ = dptrain("eval", "--model", "mlp", "--weights", tmp_path / "w.npz",
                           "--dataset", "synthetic:1x28x28:100")
    assert_refused(code, err, tmp_path / "w.npz")


def test_newest_checkpoint_fifo(tmp_path):
    d = tmp_path / "ck"
    args = [*TRAIN, "--dataset", "synthetic:1x8x8:100", "--checkpoint-dir", d]
    assert dptrain(*args)[0] == 0
    os.mkfifo(d / "ckpt-000000009.npz")
    code, err, _ = dptrain(*args, "--resume")
    assert_refused(code, err, d / "ckpt-000000009.npz")
    assert checkpoint.list_checkpoints(d)[0].name == "ckpt-000000002.npz"


def test_config_fifo_nobody_writes_is_refused_within_the_wait(tmp_path):
    os.mkfifo(tmp_path / "c.toml")
    code, err, took = dptrain(*TRAIN, "--dataset", "synthetic:1x8x8:100", "--config",
                              tmp_path / "c.toml")
    assert code == 2 and "--config" in err and "c.toml: a pipe that gave nothing" in err, err


def test_config_from_a_pipe_is_read(tmp_path):
    m = tmp_path / "m.jsonl"
    script = (f"exec {sys.executable} -m dptrain.cli {' '.join(map(str, TRAIN))} --dataset "
              f"synthetic:1x8x8:100 --metrics-out {m} --config <(printf 'lr = 0.125\\n')")
    res = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         timeout=DEADLINE_S)
    assert res.returncode == 0, res.stderr
    assert '"lr": 0.125' in m.read_text().splitlines()[0]
