#!/usr/bin/env python3
"""Train the same run on 1 rank and on P ranks and compare the parameters they end with.

    scripts/compare_ranks.py --ranks 2 [--device gpu] [--rtol 1e-9] -- TRAIN FLAGS...

The flags after ``--`` go to both `dptrain train` runs (give --dtype float64 and, for models
with BatchNorm, --sync-bn: the rank-count guarantee of docs/architecture.md). The P-rank run
goes through `mpiexec -n P` (with --allow-gpu-sharing on a GPU, so that one GPU serves every
rank). Prints the largest relative difference per array and exits 1 when any exceeds --rtol,
or when either run fails.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

from dptrain.model_check.ranks import compare, train


def report(one: str, many: str, rtol: float, atol: float) -> bool:
    result = compare(one, many, rtol, atol)
    if result.problem:
        print(result.problem)
        return False
    for k, size, rel, ok in result.rows:
        print(f"{k:>14}  {size:>8}  max rel diff {rel:.3e}{'' if ok else '  <-- differs'}")
    return result.ok


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--rtol", type=float, default=1e-9)
    p.add_argument("--atol", type=float, default=1e-12)
    p.add_argument("--outdir", default=None, help="keep both weights files here")
    p.add_argument("flags", nargs=argparse.REMAINDER, help="-- then the flags of `dptrain train`")
    args = p.parse_args(argv)
    flags = args.flags[1:] if args.flags[:1] == ["--"] else args.flags
    if args.ranks < 2:
        p.error("--ranks must be at least 2")
    outdir = args.outdir or tempfile.mkdtemp(prefix="compare_ranks_")
    os.makedirs(outdir, exist_ok=True)
    one, many = os.path.join(outdir, "1rank.npz"), os.path.join(outdir, f"{args.ranks}ranks.npz")
    for ranks, path in ((1, one), (args.ranks, many)):
        rc = train(ranks, path, flags, device=args.device, echo=True).returncode
        if rc != 0:
            print(f"compare_ranks: the {ranks}-rank run failed (exit {rc})")
            return 1
    ok = report(one, many, args.rtol, args.atol)
    print(f"1 rank vs {args.ranks} ranks: {'the same parameters' if ok else 'DIFFERENT parameters'} "
          f"(rtol {args.rtol:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
