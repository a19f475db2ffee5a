"""PyTorch reference for ``dptrain bench``: the same models, timed the same way.

Run as a separate process (``python -m dptrain.bench.torch_reference``) so that
importing torch does not inflate dptrain's measured memory. It mirrors
../shared/bench/torch_cnn.py: random float32 data, Adadelta(lr=1.0, rho=0.9),
median of zero_grad + forward + cross-entropy + backward + step; ``--ddp N`` runs
DistributedDataParallel over gloo with N processes (batch per process). ``--device cuda``
times the step on the GPU with cuDNN (autotuned: cudnn.benchmark), synchronising after each
step; ``--batches`` times several batch sizes in one process. PyTorch is a baseline here
only; dptrain never imports it for training.
"""
import argparse
import json
import os
import resource
import statistics
import time

import torch
import torch.nn as tnn
import torch.nn.functional as F
from ..allocator import keep_freed_memory


class BasicBlock(tnn.Module):
    """dptrain/models/zoo.py _basic_block: conv3x3-BN-ReLU-conv3x3-BN plus the input, or a
    conv1x1(stride)-BN projection of it where the shape changes (option B), then ReLU."""

    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.branch = tnn.Sequential(
            tnn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), tnn.BatchNorm2d(c_out), tnn.ReLU(),
            tnn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), tnn.BatchNorm2d(c_out))
        self.shortcut = tnn.Identity() if stride == 1 and c_in == c_out else tnn.Sequential(
            tnn.Conv2d(c_in, c_out, 1, stride, bias=False), tnn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.branch(x) + self.shortcut(x))


def resnet20():
    """dptrain's resnet-20 for 3x32x32 (272,474 parameters)."""
    layers, c = [tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU()], 16
    for stage, width in enumerate((16, 32, 64)):
        for b in range(3):
            layers.append(BasicBlock(c, width, 2 if stage > 0 and b == 0 else 1))
            c = width
    return tnn.Sequential(*layers, tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))


def build(name):
    if name == "resnet-20":
        return resnet20()
    if name == "thesis-cnn":
        return tnn.Sequential(
            tnn.Conv2d(1, 32, 5), tnn.BatchNorm2d(32), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Conv2d(32, 32, 5), tnn.BatchNorm2d(32), tnn.ReLU(), tnn.MaxPool2d(2),
            tnn.Flatten(), tnn.Linear(512, 256), tnn.ReLU(), tnn.Dropout(0.5), tnn.Linear(256, 10))
    if name == "vgg-cifar":                 # dptrain/models/zoo.py vgg_cifar, for 3x32x32
        layers, c = [], 3
        for width in (32, 64, 128):
            for _ in range(2):
                layers += [tnn.Conv2d(c, width, 3, padding=1), tnn.BatchNorm2d(width), tnn.ReLU()]
                c = width
            layers.append(tnn.MaxPool2d(2))
        return tnn.Sequential(*layers, tnn.Flatten(), tnn.Linear(128 * 4 * 4, 256), tnn.ReLU(),
                              tnn.Dropout(0.5), tnn.Linear(256, 10))
    if name == "mlp":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 256), tnn.ReLU(),
                              tnn.Linear(256, 256), tnn.ReLU(), tnn.Linear(256, 10))
    if name == "mlp-wide":
        return tnn.Sequential(tnn.Flatten(), tnn.Linear(784, 4096), tnn.ReLU(),
                              tnn.Linear(4096, 4096), tnn.ReLU(), tnn.Linear(4096, 10))
    raise SystemExit(f"no PyTorch reference for {name}")


INPUT_SHAPES = {"vgg-cifar": (3, 32, 32), "resnet-20": (3, 32, 32)}


def time_steps(a, rank=0, world=1, batch=None):
    batch = batch or a.batch
    torch.set_num_threads(a.threads)
    # the same allocator settings as dptrain's processes (allocator.py): side by side, the
    # reference must not pay page faults that dptrain was spared (37 -> 25 ms a step here)
    keep_freed_memory()
    torch.manual_seed(0)
    device = torch.device(a.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True     # cuDNN picks its fastest algorithms
        # peak of this batch size alone (--batches runs several in one process): from the
        # model on, as dptrain's counting allocator (bench/memory.py)
        torch.cuda.reset_peak_memory_stats(device)
    model = build(a.model).train().to(device)
    if world > 1:
        model = tnn.parallel.DistributedDataParallel(model)   # gloo Allreduce inside backward
    opt = torch.optim.Adadelta(model.parameters(), lr=1.0, rho=0.9)
    g = torch.Generator().manual_seed(1 + rank)
    shape = INPUT_SHAPES.get(a.model, (1, 28, 28))
    xs = [torch.rand(batch, *shape, generator=g).to(device) for _ in range(8)]
    ys = [torch.randint(0, 10, (batch,), generator=g).to(device) for _ in range(8)]
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    if world > 1:
        torch.distributed.barrier()
    sync()
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xs[i % 8]), ys[i % 8])
        loss.backward()
        opt.step()
        sync()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    return {"median_step_s": statistics.median(times), "min_step_s": min(times),
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "torch": torch.__version__, "world_size": world, "batch": batch,
            "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
            "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "max_memory_allocated_mb": torch.cuda.max_memory_allocated(device) / 2**20
            if device.type == "cuda" else None}


def ddp_worker(rank, world, a):
    import torch.distributed as dist
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(a.port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        res = time_steps(a, rank, world)
        medians = [torch.zeros(1, dtype=torch.float64) for _ in range(world)]
        dist.all_gather(medians, torch.tensor([res["median_step_s"]], dtype=torch.float64))
        res["median_step_s"] = max(float(m) for m in medians)     # the job runs at the slowest
        if rank == 0:
            print(json.dumps(res), flush=True)
    finally:
        # without this, gloo's threads can race at exit (SIGABRT after the results printed)
        import gc
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="thesis-cnn")
    p.add_argument("--batch", type=int, default=64, help="per process")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--ddp", type=int, default=1, help="DistributedDataParallel over N processes")
    p.add_argument("--port", type=int, default=29533)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--batches", help="comma list of batch sizes, one JSON line each")
    a = p.parse_args()
    if a.batches:
        for b in a.batches.split(","):
            print(json.dumps(time_steps(a, batch=int(b))), flush=True)
    elif a.ddp > 1:
        import torch.multiprocessing as mp
        mp.spawn(ddp_worker, args=(a.ddp, a), nprocs=a.ddp, join=True)
    else:
        print(json.dumps(time_steps(a)))


if __name__ == "__main__":
    main()
