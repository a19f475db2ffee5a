"""Kind 7: crafted files and absurd numbers are bad input (exit 2 naming them); nothing in a
data file runs; a valid but unusual configuration trains."""
from __future__ import annotations

import gzip
import json
import os
import pickle
from pathlib import Path

import numpy as np

from .case import DPTRAIN, ERROR_LINE, TINY, Case, mpi, train
from .fixtures import idx_bytes, make_checkpoints, newest_checkpoint, rewrite_checkpoint, write_mnist

MNIST = ["--model", "mlp", "--dataset", "mnist:mn", "--batch-size", "8", "--max-steps", "2",
         "--quiet"]
NO_TRACEBACK = r"Traceback"


class _MakesAFile:
    """Unpickling this runs `touch MARKER`: what a malicious CIFAR batch would do."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def _cifar(payload_in: str):
    def setup(tmp: Path) -> None:
        d = tmp / "cf"
        d.mkdir()
        rng = np.random.default_rng(0)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            with open(d / name, "wb") as f:
                if name == payload_in:
                    pickle.dump({b"data": _MakesAFile(str(tmp / "pwned")), b"labels": [0]}, f)
                else:
                    pickle.dump({b"batch_label": b"b", b"labels": list(range(10)) * 2,
                                 b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8)}, f)
    return setup


def _mnist_with(images: bytes, gz: bool = False):
    return lambda tmp: write_mnist(tmp / "mn", images=images, gz=gz)


def _bad(name: str, argv, says: str, setup=None, **kw) -> Case:
    return Case(name, 7, argv, rc=2, stderr=ERROR_LINE + ".*" + says, stderr_not=NO_TRACEBACK,
                setup=setup, **kw)


def _meta(edit):
    def setup(tmp: Path) -> None:
        rewrite_checkpoint(newest_checkpoint(make_checkpoints(tmp, steps=2)), edit_meta=edit)
    return setup


def _set(key, value):
    def edit(meta):
        d = meta
        for k in key[:-1]:
            d = d[k]
        d[key[-1]] = value
    return edit


def _lock(content: bytes):
    def setup(tmp: Path) -> None:
        (tmp / "ck").mkdir()
        (tmp / "ck" / ".dptrain.lock").write_bytes(content)
    return setup


def _plot_input(content: str):
    return lambda tmp: (tmp / "m.jsonl").write_text(content)


def cases() -> list[Case]:
    resume = train(*TINY, "--max-steps", "4", "--checkpoint-dir", "ck", "--resume")
    plot = [DPTRAIN, "plot", "m.jsonl", "-o", "o.png"]
    out = [
        _bad("idx-255-dimensions", train(*MNIST), "dimensions",
             _mnist_with(idx_bytes((1,) * 255))),
        _bad("idx-trailing-bytes", train(*MNIST), "after",
             _mnist_with(idx_bytes((40, 8, 8)) + b"extra")),
        _bad("idx-trailing-bytes-gz", train(*MNIST), "after",
             _mnist_with(idx_bytes((40, 8, 8)) + b"extra", gz=True)),
        _bad("idx-gz-promises-62GB", train(*MNIST), "train-images",
             _mnist_with(idx_bytes((250000, 500, 500), os.urandom(64 << 10)), gz=True)),
        _bad("idx-header-magic", train(*MNIST), "magic",
             _mnist_with(b"\x01\x02" + idx_bytes((40, 8, 8))[2:])),
        _bad("idx-truncated", train(*MNIST), "train-images",
             _mnist_with(idx_bytes((40, 8, 8))[:100])),
        _bad("cifar-pickle-payload-train", train("--model", "mlp", "--dataset", "cifar10:cf",
                                                  "--max-steps", "1", "--quiet"),
             "not allowed", _cifar("data_batch_3"), absent=["pwned"]),
        _bad("cifar-pickle-payload-test", train("--model", "mlp", "--dataset", "cifar10:cf",
                                                 "--max-steps", "1", "--quiet"),
             "not allowed", _cifar("test_batch"), absent=["pwned"]),
        _bad("cifar2-pickle-payload", mpi(2, "--model", "mlp", "--dataset", "cifar10:cf",
                                          "--max-steps", "1", "--quiet"),
             "not allowed", _cifar("data_batch_1"), absent=["pwned"]),
        _bad("checkpoint-meta-step-string", resume, "step", _meta(_set(("step",), "x"))),
        _bad("checkpoint-meta-epoch-negative", resume, "epoch", _meta(_set(("epoch",), -3))),
        _bad("checkpoint-meta-lr-string", resume, "lr", _meta(_set(("optimizer", "lr"), "x"))),
        _bad("checkpoint-meta-pos-missing", resume, "pos",
             _meta(lambda m: m.pop("pos", None))),
        Case("lock-file-garbage", 7, resume[:-1] + ["--keep-checkpoints", "3"], rc=0,
             setup=_lock(b"zz{\xff"), stderr=r"lock"),
        Case("lock-file-pid-huge", 7, train(*TINY, "--max-steps", "2", "--checkpoint-dir", "ck"),
             rc=0, setup=_lock(json.dumps({"pid": 10 ** 30, "host": os.uname().nodename})
                               .encode())),
        _bad("lock-file-is-a-directory", train(*TINY, "--max-steps", "2", "--checkpoint-dir",
                                               "ck"), r"\.dptrain\.lock",
             lambda tmp: (tmp / "ck" / ".dptrain.lock").mkdir(parents=True)),
        _bad("net-emulate-lat-1e300s", train(*TINY, "--max-steps", "2", "--net-emulate",
                                             "lat=1e300s"), "lat"),
        _bad("net-emulate-bw-tiny", train(*TINY, "--max-steps", "2", "--net-emulate",
                                          "bw=1e-300bit"), "bw"),
        _bad("lr-gamma-1e300", train(*TINY, "--max-steps", "2", "--lr-gamma", "1e300"),
             "--lr-gamma"),
        _bad("comm-timeout-1e300", train(*TINY, "--max-steps", "2", "--comm-timeout", "1e300"),
             "--comm-timeout"),
        _bad("lr-nan-in-config", train(*TINY, "--max-steps", "2", "--config", "c.toml"),
             "lr", lambda tmp: (tmp / "c.toml").write_text("lr = nan\n")),
        _bad("plot-empty-file", plot, "m.jsonl", _plot_input("")),
        _bad("plot-not-json", plot, "line 1", _plot_input("notjson\n")),
        _bad("plot-loss-string", plot, "loss",
             _plot_input('{"type": "epoch", "epoch": 1, "step": 5, "loss": "low", '
                         '"accuracy": 0.8}\n')),
        _bad("synthetic-extra-field", train("--model", "mlp", "--dataset",
                                            "synthetic:1x28x28:100:junk", "--max-steps", "1"),
             "synthetic"),
        _bad("synthetic-huge", train("--model", "mlp", "--dataset",
                                     "synthetic:1x28x28:1000000000000", "--max-steps", "1"),
             "GiB"),
        _bad("npz-not-a-zip", train("--model", "mlp", "--dataset", "npz:d.npz",
                                    "--max-steps", "1"), "d.npz",
             lambda tmp: (tmp / "d.npz").write_bytes(b"PK\x03\x04garbage")),
        Case("fc-replicate-all-2ranks", 7,
             mpi(2, "--model", "mlp", "--dataset", "synthetic:1x28x28:400", "--batch-size",
                 "32", "--fc-replicate", "all", "--max-steps", "12", "--quiet"),
             rc=0, deadline=60),
        Case("fc-replicate-all-overlap-fc-2ranks", 7,
             mpi(2, "--model", "mlp", "--dataset", "synthetic:1x28x28:400", "--batch-size",
                 "32", "--sync", "overlap-fc", "--fc-replicate", "all", "--max-steps", "8",
                 "--quiet"), rc=0, deadline=60),
    ]
    return out
