"""What evaluation costs next to a training epoch (docs/performance.md, "What the defaults
cost"): one process, thesis-cnn on mnist5k, alternating rounds, medians.

    .venv/bin/python scripts/eval_cost.py [--rounds 3] [--threads 1]
"""
import argparse
import statistics
import time

from dptrain.train import TrainConfig, Trainer
from dptrain.train.epoch_report import EpochReport


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    times = {"training epoch": [], "test split": [], "training set": []}
    for _ in range(args.rounds):
        trainer = Trainer(TrainConfig(model="thesis-cnn", dataset="mnist5k", epochs=1,
                                      quiet=True, threads=args.threads))
        report = EpochReport(trainer)
        t0 = time.perf_counter()
        trainer.run()                           # one epoch, then the test split
        run_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        report.evaluate_test()
        times["test split"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        report.evaluate_training_set(refresh=False)
        times["training set"].append(time.perf_counter() - t0)
        times["training epoch"].append(run_s - times["test split"][-1])
    epoch = statistics.median(times["training epoch"])
    for name, values in times.items():
        m = statistics.median(values)
        print(f"{name:>15}: {m:6.2f} s  ({m / epoch:.2f} of a training epoch)")


if __name__ == "__main__":
    main()
