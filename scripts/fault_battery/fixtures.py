"""Files the cases craft in their fresh directory."""
from __future__ import annotations

import gzip
import math
import os
import struct
import subprocess
from pathlib import Path

import numpy as np

from .case import DPTRAIN, TINY


def write_npz(path: Path, n: int = 200, seed: int = 0, shape=(1, 8, 8)) -> None:
    rng = np.random.default_rng(seed)
    np.savez(path, x=rng.random((n, *shape), dtype=np.float32),
             y=np.arange(n) % 4, x_test=rng.random((40, *shape), dtype=np.float32),
             y_test=np.arange(40) % 4)


def idx_bytes(shape, body: bytes | None = None, ndim: int | None = None) -> bytes:
    head = bytes([0, 0, 0x08, len(shape) if ndim is None else ndim])
    return head + b"".join(struct.pack(">I", n) for n in shape) + (
        bytes(math.prod(shape)) if body is None else body)


def write_mnist(directory: Path, images: bytes | None = None, gz: bool = False) -> None:
    """An MNIST directory of 40 8x8 images (test 20); `images` replaces the training images."""
    directory.mkdir(exist_ok=True)
    files = {
        "train-images-idx3-ubyte": images if images is not None
        else idx_bytes((40, 8, 8), bytes(range(256)) * 10),
        "train-labels-idx1-ubyte": idx_bytes((40,), bytes(i % 4 for i in range(40))),
        "t10k-images-idx3-ubyte": idx_bytes((20, 8, 8), bytes(range(256)) * 5),
        "t10k-labels-idx1-ubyte": idx_bytes((20,), bytes(i % 4 for i in range(20))),
    }
    for name, data in files.items():
        if gz and name == "train-images-idx3-ubyte":
            (directory / (name + ".gz")).write_bytes(gzip.compress(data))
        else:
            (directory / name).write_bytes(data)


def run_dptrain(tmp: Path, *args: str, mpi: int = 0) -> None:
    """A preparatory run in the case's directory; it must succeed."""
    from .case import MPIEXEC
    argv = ([MPIEXEC, "-n", str(mpi)] if mpi else []) + [DPTRAIN, "train", *args]
    env = {k: v for k, v in os.environ.items() if k not in ("DPTRAIN_FAULT",)}
    res = subprocess.run(argv, cwd=tmp, env=env, capture_output=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"setup run failed ({res.returncode}): {res.stderr.decode()[-300:]}")


def make_checkpoints(tmp: Path, steps: int = 4, every: int = 2, extra=()) -> Path:
    run_dptrain(tmp, *TINY, "--max-steps", str(steps), "--checkpoint-dir", "ck",
                "--checkpoint-every", str(every), *extra)
    return tmp / "ck"


def newest_checkpoint(directory: Path) -> Path:
    return sorted(directory.glob("ckpt-*.npz"))[-1]


def rewrite_checkpoint(path: Path, edit_arrays=None, edit_meta=None) -> None:
    import json
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if edit_meta:
        meta = json.loads(arrays["meta"].tobytes())
        edit_meta(meta)
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    if edit_arrays:
        edit_arrays(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def weights_finite(path: Path) -> str | None:
    try:
        with np.load(path) as z:
            bad = [k for k in z.files if not np.all(np.isfinite(z[k]))]
    except Exception as exc:                     # noqa: BLE001 (any unreadable file is a defect)
        return f"{path.name} unreadable: {exc}"
    return f"{path.name} holds non-finite {bad[0]}" if bad else None


def same_weights(a: Path, b: Path) -> str | None:
    with np.load(a) as za, np.load(b) as zb:
        if sorted(za.files) != sorted(zb.files):
            return f"{a.name} and {b.name} hold other arrays"
        for k in za.files:
            if za[k].tobytes() != zb[k].tobytes():
                diff = float(np.max(np.abs(za[k].astype(np.float64) - zb[k])))
                return f"{k} differs between {a.name} and {b.name} (max {diff:.3g})"
    return None
