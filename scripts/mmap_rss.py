"""Peak resident set per rank, training on a memory-mapped data set larger than memory
against the same run on a small one (docs/performance.md, Data larger than memory).

    .venv/bin/python scripts/mmap_rss.py --gib 4 --ranks 2 --steps 20

builds DIR/big (a uint8 npy:DIR data set of --gib GiB, 3x32x32 images: each image its
class's pattern, so the data are valid and learnable) and DIR/small (the same images, 5,000
of them), trains the same model for the same steps on each under mpiexec, and prints every
rank's VmHWM (scripts/rss_probe.py). Both have a 2,000-image x_test.npy: evaluation then
costs the same for both and seconds; with --split they have none, and the fixed fifth of
each is held out and evaluated at the end (a fifth of 4 GiB: minutes). DIR
(default /tmp/dptrain-mmap-rss) is deleted at the end unless --keep; --sparse leaves most
of the big images zero (a sparse file: cheap on disk, for tests).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPE = (3, 32, 32)


def build(directory: str, n: int, n_test: int | None = 2000, sparse: bool = False,
          shape=SHAPE, chunk: int = 65536) -> None:
    """x.npy (n images), y.npy, x_test.npy, y_test.npy: image i is its class's fixed random
    pattern (every 64th image only with ``sparse``: the others stay zero, holes in the file)."""
    os.makedirs(directory)
    rng = np.random.default_rng(0)
    protos = rng.integers(0, 256, (10,) + shape, dtype=np.uint8)
    y = (np.arange(n) * 7919 % 10).astype(np.int64)        # every class, mixed
    np.save(os.path.join(directory, "y.npy"), y)
    x = np.lib.format.open_memmap(os.path.join(directory, "x.npy"), mode="w+",
                                  dtype=np.uint8, shape=(n,) + shape)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        if sparse:
            rows = np.arange(lo + (-lo) % 64, hi, 64)
            x[rows] = protos[y[rows]]
        else:
            x[lo:hi] = protos[y[lo:hi]]
    x.flush()
    del x
    if n_test is None:                 # npy:DIR holds out a fifth of x.npy by index
        return
    yt = np.arange(n_test) % 10
    np.save(os.path.join(directory, "x_test.npy"), protos[yt])
    np.save(os.path.join(directory, "y_test.npy"), yt)


def measure(dataset: str, ranks: int, steps: int, batch: int, model: str, workdir: str,
            timeout: float = 1800) -> list[dict]:
    """Every rank's record from scripts/rss_probe.py, after training ``steps`` steps."""
    out = tempfile.mkdtemp(prefix="rss-", dir=workdir)
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    cmd = [sys.executable, os.path.join(HERE, "rss_probe.py"), out, "train", "--model", model,
           "--dataset", dataset, "--max-steps", str(steps), "--batch-size", str(batch),
           "--quiet", "--threads", "1"]
    if ranks > 1:
        cmd = [mpiexec, "-n", str(ranks)] + cmd
    done = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {done.returncode}: {done.stderr[-2000:]}")
    records = []
    for r in range(ranks):
        with open(os.path.join(out, f"rank{r}.json")) as f:
            records.append(json.load(f))
    shutil.rmtree(out)
    return records


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--gib", type=float, default=4.0, help="size of the big x.npy")
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--model", default="mlp")
    p.add_argument("--dir", default="/tmp/dptrain-mmap-rss")
    p.add_argument("--sparse", action="store_true")
    p.add_argument("--keep", action="store_true")
    p.add_argument("--split", action="store_true", help="no x_test.npy: the fixed fifth of "
                   "each set is held out and evaluated (minutes for the big set)")
    a = p.parse_args()
    if os.path.exists(a.dir):
        sys.exit(f"{a.dir} exists: give another --dir (nothing is overwritten)")
    n_big = int(a.gib * 2**30) // int(np.prod(SHAPE))
    try:
        t0 = time.perf_counter()
        n_test = None if a.split else 2000
        build(os.path.join(a.dir, "big"), n_big, n_test, sparse=a.sparse)
        build(os.path.join(a.dir, "small"), 5000, n_test)
        print(f"built {n_big:,} images ({a.gib:g} GiB) in {time.perf_counter() - t0:.0f} s")
        rows = {}
        for name in ("small", "big"):
            t0 = time.perf_counter()
            rows[name] = measure(f"npy:{os.path.join(a.dir, name)}", a.ranks, a.steps,
                                 a.batch_size, a.model, a.dir)
            print(f"{name}: {time.perf_counter() - t0:.0f} s")
        print(f"{'rank':>4} {'small MiB':>10} {'big MiB':>10} {'big - small':>12}")
        for small, big in zip(rows["small"], rows["big"]):
            s, b = small["vm_hwm_kib"] / 1024, big["vm_hwm_kib"] / 1024
            print(f"{small['rank']:>4} {s:>10.1f} {b:>10.1f} {b - s:>12.1f}")
        print(json.dumps(rows))
    finally:
        if not a.keep:
            shutil.rmtree(a.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
