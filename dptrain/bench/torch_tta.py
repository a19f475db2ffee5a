"""PyTorch DDP side of ``dptrain bench --to-accuracy``: train until the test accuracy reaches
the target, as ``dptrain train --stop-at-accuracy`` does, from the same starting point.

Run as its own process (``python -m dptrain.bench.torch_tta``); with ``--ranks P`` > 1 it
spawns P processes joined by DistributedDataParallel over gloo on a free loopback port. What
it shares with dptrain, so that only the frameworks differ:

- the data: read with dptrain's own reader (``dptrain.data.load``: the same normalisation);
- the batches: dptrain's global batches for each (seed, epoch) (``sampling.global_batches``),
  each split over the ranks as dptrain splits them (``data.rank_slice``); each rank's loss is
  its sum over the global batch size times P, so DDP's mean over ranks is the global mean;
- the initial weights: dptrain's model built with the same seed, copied into the torch mirror
  (torch_reference.build): convolution weights as they are, dense weights transposed;
- the optimiser, its hyper-parameters and the learning rate of every step (dptrain's own
  Schedule), 1 thread per process.

What differs: dropout masks (each framework's own generator) and BatchNorm in training, whose
statistics are per rank here (SyncBatchNorm needs a GPU) and over the global batch in dptrain
(its default). The test split is evaluated after every epoch and, with --eval-every-steps N,
every N steps within epochs too (as ``dptrain train --eval-every-steps``). Rank 0 prints one
JSON line per evaluation within an epoch, one per epoch (the last one's partial when the target
stopped it inside; its training time leaves the evaluations out), then a last one with the end.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import socket
import time

import numpy as np
import torch
import torch.nn.functional as F

from .torch_reference import build
from ..allocator import keep_freed_memory

OPTIMIZERS = {"adadelta": lambda p, lr: torch.optim.Adadelta(p, lr=lr, rho=0.9, eps=1e-6),
              "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
              "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9)}


def copy_dptrain_weights(dp_model, torch_model) -> None:
    """dptrain's parameters and BatchNorm buffers into the torch mirror, layer by layer
    (both are flat sequences of the same layers; Flatten, ReLU, pooling hold nothing)."""
    state = dp_model.state_dict()
    layers = [m for m in torch_model.modules()
              if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.BatchNorm2d))]
    ours = sorted({int(k.split(".")[0]) for k in state}, key=int)
    if len(ours) != len(layers):
        raise SystemExit(f"torch mirror has {len(layers)} layers with weights, dptrain {len(ours)}")
    for i, layer in zip(ours, layers):
        def take(name):
            return torch.from_numpy(np.ascontiguousarray(state[f"{i}.{name}"], np.float32))
        with torch.no_grad():
            if isinstance(layer, torch.nn.BatchNorm2d):
                layer.weight.copy_(take("gamma"))
                layer.bias.copy_(take("beta"))
                layer.running_mean.copy_(take("running_mean"))
                layer.running_var.copy_(take("running_var"))
            else:
                w = take("W")
                layer.weight.copy_(w.T if isinstance(layer, torch.nn.Linear) else w)
                if layer.bias is not None:
                    layer.bias.copy_(take("b"))


def starting_point(a):
    """The data set and the torch model holding dptrain's initial weights for a.seed."""
    from .. import backend, data, models
    backend.set_dtype("float32")
    ds = data.load(a.dataset)
    dp_model = models.get(a.model, ds.input_shape, ds.num_classes, seed=a.seed)
    model = build(a.model)
    copy_dptrain_weights(dp_model, model)
    return ds, model


def evaluate(model, x, y, rank, world, batch):
    """Test loss and accuracy in inference mode, each rank its share, summed over ranks."""
    from .. import data
    mine = data.rank_slice(np.arange(len(x)), rank, world)
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64)
    with torch.no_grad():
        for s in range(0, len(mine), batch):
            at = torch.from_numpy(mine[s:s + batch])
            out = model(x[at])
            sums[0] += F.cross_entropy(out, y[at], reduction="sum").item()
            sums[1] += (out.argmax(1) == y[at]).sum().item()
    model.train()
    if world > 1:
        torch.distributed.all_reduce(sums)
    return float(sums[0]) / len(x), float(sums[1]) / len(x)


def train(rank, world, a):
    from .. import data
    from ..data.sampling import global_batches, steps_per_epoch
    from ..optim import Schedule
    torch.set_num_threads(a.threads)
    # the same allocator settings as dptrain's processes (allocator.py): side by side, the
    # reference must not pay page faults that dptrain was spared (37 -> 25 ms a step here)
    keep_freed_memory()
    torch.manual_seed(a.seed + rank)
    ds, model = starting_point(a)
    x, y = torch.from_numpy(np.asarray(ds.x_train)), torch.from_numpy(np.asarray(ds.y_train))
    xt, yt = torch.from_numpy(np.asarray(ds.x_test)), torch.from_numpy(np.asarray(ds.y_test))
    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = OPTIMIZERS[a.optimizer](net.parameters(), a.lr)
    say = (lambda **k: print(json.dumps(k), flush=True)) if rank == 0 else (lambda **k: None)
    schedule = Schedule(a.lr, a.lr_schedule, a.max_epochs * steps_per_epoch(len(x), a.batch_size),
                        a.lr_step_size, a.lr_gamma)            # dptrain's own, step by step
    steps = 0
    if world > 1:
        torch.distributed.barrier()
    for epoch in range(a.max_epochs):
        t0 = time.perf_counter()
        eval_s, samples, reached = 0.0, 0, False
        batches = global_batches(len(x), a.batch_size, a.seed, epoch, False)
        for k, ids in enumerate(batches):
            mine = torch.from_numpy(ids[data.rank_slice(np.arange(len(ids)), rank, world)])
            for group in opt.param_groups:
                group["lr"] = schedule(steps)
            steps += 1
            samples += len(ids)
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(net(x[mine]), y[mine], reduction="sum") * (world / len(ids))
            loss.backward()
            opt.step()
            if a.eval_every_steps and steps % a.eval_every_steps == 0 and k + 1 < len(batches):
                t_eval = time.perf_counter()
                test_loss, accuracy = evaluate(model, xt, yt, rank, world, a.eval_batch_size)
                took = time.perf_counter() - t_eval
                eval_s += took
                say(within_epoch=epoch + 1, steps=steps, eval_s=took, test_loss=test_loss,
                    test_accuracy=accuracy)
                if reached := accuracy >= a.target:
                    break
        t1 = time.perf_counter()
        if not reached:
            test_loss, accuracy = evaluate(model, xt, yt, rank, world, a.eval_batch_size)
        t2 = time.perf_counter()
        say(epoch=epoch + 1, steps=steps, lr=schedule(steps - 1), train_s=t1 - t0 - eval_s,
            eval_s=eval_s + t2 - t1, samples=samples, test_loss=test_loss, test_accuracy=accuracy)
        if accuracy >= a.target:
            break
    say(end=True, torch=torch.__version__)


def ddp_worker(rank, world, a):
    import torch.distributed as dist
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(a.port))
    dist.init_process_group("gloo", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=300))
    try:
        train(rank, world, a)
    finally:
        import gc
        gc.collect()              # gloo's threads can race at exit otherwise (torch_reference)
        dist.barrier()
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="thesis-cnn")
    p.add_argument("--dataset", required=True)
    p.add_argument("--batch-size", type=int, default=64, help="global")
    p.add_argument("--optimizer", default="adadelta", choices=sorted(OPTIMIZERS))
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--lr-schedule", default="constant")
    p.add_argument("--lr-step-size", type=int, default=1000)
    p.add_argument("--lr-gamma", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--target", type=float, required=True)
    p.add_argument("--max-epochs", type=int, default=10)
    p.add_argument("--eval-every-steps", type=int, default=0)
    p.add_argument("--eval-batch-size", type=int, default=128)
    p.add_argument("--ranks", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    if a.ranks == 1:
        train(0, 1, a)
    else:
        import torch.multiprocessing as mp
        a.port = free_port()
        mp.spawn(ddp_worker, args=(a.ranks, a), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()
