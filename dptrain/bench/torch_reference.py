"""PyTorch reference for ``dptrain bench``: the same models, timed the same way.

Run as a separate process (``python -m dptrain.bench.torch_reference``) so that
importing torch does not inflate dptrain's measured memory. It mirrors
../shared/bench/torch_cnn.py: random float32 data, Adadelta(lr=1.0, rho=0.9),
median of zero_grad + forward + cross-entropy + backward + step. PyTorch is a
baseline here only; dptrain never imports it for training.
"""
import argparse
import json
import resource
import statistics
import time

import torch
import torch.nn as tnn
import torch.nn.functional as F


def build(name):
    if name == "thesis-cnn":
        return tnn.Sequential(
            tnn.Conv2d(1, 32, 5), tnn.BatchNorm2d(32), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(32, 32, 5), tnn.BatchNorm2d(32), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(512, 256), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(256, 10))
    if name == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(),
                              tnn.Linear(256, 256), tnn.ReLU(), tnn.Linear(256, 10))
    if name == "mlp-wide":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 4096), tnn.ReLU(),
                              tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Linear(4096, 10))
    raise SystemExit(f"no PyTorch reference for {name}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="thesis-cnn")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = build(a.model).train()
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.9)
    g = torch.Generator().manual_seed(1)
    xs = [torch.rand(a.batch, 1, 28, 28, generator=g) for _ in range(8)]
    ys = [torch.randint(0, 10, (a.batch,), generator=g) for _ in range(8)]
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs[i % 8]), ys[i % 8])
        loss.backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"median_step_s": statistics.median(times), "min_step_s": min(times),
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "torch": torch.__version__}))


if __name__ == "__main__":
    main()
