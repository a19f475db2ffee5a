"""Your own model on your own arrays, trained data-parallel with dptrain's Python API.

    python examples/train_mine.py --out run1                  # one rank
    mpiexec -n 2 python examples/train_mine.py --out run2     # two ranks, the same training
    mpiexec -n 2 python examples/train_mine.py --out run2 --steps 40 --resume

Every rank runs this whole script: each builds the same arrays (a fixed seed) and calls
dptrain.fit, which splits every global batch over the ranks, averages the gradients and
writes metrics and checkpoints from rank 0. A bad option is one "dptrain: error:" line and
exit 2 on every rank, before training (docs/api.md).
"""
import argparse
import os

import numpy as np

import dptrain
from dptrain import nn


def build(input_shape, num_classes):
    """The model: the layers for one sample of ``input_shape`` (C, H, W) and ``num_classes``
    outputs. Every rank calls it; dptrain broadcasts rank 0's initial weights."""
    c, h, w = input_shape
    return [
        nn.Conv2D(c, 8, 3, padding=1), nn.ReLU(),
        # a skip connection: the branch's output plus the block's input
        nn.Residual([nn.Conv2D(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2D(8, 8, 3, padding=1)]),
        nn.ReLU(), nn.MaxPool2D(2),
        nn.Flatten(),
        nn.Dense(8 * (h // 2) * (w // 2), 32), nn.ReLU(),
        nn.Dense(32, num_classes, init="glorot"),
    ]


def make_data(n=600, classes=4, shape=(1, 12, 12), seed=7):
    """Images in [0, 1] as class prototypes plus noise, and integer labels: stand-ins for
    arrays your own code reads. The same on every rank (the start-up compares them)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((classes, *shape))
    y = rng.integers(0, classes, n)
    x = 0.7 * prototypes[y] + 0.3 * rng.random((n, *shape))
    return x.astype(np.float32), y


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="train_mine_out",
                   help="directory for the metrics, checkpoints and weights")
    p.add_argument("--steps", type=int, default=20, help="optimiser steps in all")
    p.add_argument("--batch-size", type=int, default=32, help="global batch, split over the ranks")
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint")
    args = p.parse_args()

    os.makedirs(args.out, exist_ok=True)
    x, y = make_data()
    result = dptrain.fit(
        model=build, dataset=(x, y),
        batch_size=args.batch_size, max_steps=args.steps, optimizer="adam", lr=0.01, seed=1,
        metrics_out=f"{args.out}/metrics.jsonl", checkpoint_dir=f"{args.out}/checkpoints",
        checkpoint_every=10, resume=args.resume, save_weights=f"{args.out}/weights.npz",
        quiet=True)
    if result.rank == 0:
        m = result.metrics
        print(f"trained {result.step} steps on {result.ranks} rank(s): test accuracy "
              f"{m['test_accuracy']:.3f}, checkpoint {result.checkpoint}")


if __name__ == "__main__":
    main()
