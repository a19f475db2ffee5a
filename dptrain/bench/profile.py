"""``dptrain bench --profile``: where a training step's time goes, layer by layer.

Every layer's forward and backward, the loss forward and backward and the optimiser update
are timed within each step (the model's before_layer/after_layer hooks bracket the layers),
and the report gives each part's median over the timed steps and its share of the median
step; what the parts leave of the step (hooks, Python between parts, GPU idle between them)
is the unaccounted remainder. On a GPU the parts are CUDA events on the compute stream, read
once after each step (timers.DeviceTimer), so the figures are GPU time, undistorted by
synchronisation; on a CPU they are perf_counter intervals.
"""
from __future__ import annotations

import statistics

from .. import backend, models, native, nn, optim
from ..errors import UsageError
from .shared import emit_json, select_device
from .stepbench import random_batches
from .timers import timer_for_device

OPTIMIZER = "adadelta"                   # as the other bench modes and torch_reference
ALONE = ("ranks", "predict", "kernel_ops", "batch_sizes", "net_emulate")


def measure_parts(model, batch: int, steps: int, warmup: int, timer, seed: int = 0) -> list[dict]:
    """One {part: seconds} per timed step, in the order the parts ran, with "step" last."""
    opt = optim.get(OPTIMIZER, model)
    loss = nn.SoftmaxCrossEntropy()
    xs, ys = random_batches(model, batch, seed)

    def timed(kind):
        return (lambda i: timer.start(f"{kind} {i}")), (lambda i: timer.stop(f"{kind} {i}"))
    forward_hooks, backward_hooks = timed("forward"), timed("backward")
    samples = []
    for i in range(warmup + steps):
        timer.start("step")
        logits = model.forward(xs[i % 8], train=True, before_layer=forward_hooks[0],
                               after_layer=forward_hooks[1])
        timer.start("loss forward")
        loss.forward(logits, ys[i % 8])
        timer.stop("loss forward")
        timer.start("loss backward")
        dlogits = loss.backward()
        timer.stop("loss backward")
        model.backward(dlogits, before_layer=backward_hooks[0], after_layer=backward_hooks[1])
        timer.start("update")
        opt.step()
        timer.stop("update")
        timer.stop("step")
        spans = timer.read()
        if i >= warmup:
            samples.append(spans)
    return samples


def summarise(model, batch: int, samples: list[dict]) -> dict:
    """Medians in ms and shares of the median step; unaccounted = step - the parts' sum, so
    the parts and the remainder add up to the step exactly."""
    step = statistics.median(s["step"] for s in samples) * 1e3

    def part(name):
        if name not in samples[0]:
            return None, None                  # e.g. backward below the first parametrised layer
        ms = statistics.median(s[name] for s in samples) * 1e3
        return ms, ms / step
    layers = []
    for i, layer in enumerate(model.layers):
        (f_ms, f_share), (b_ms, b_share) = part(f"forward {i}"), part(f"backward {i}")
        layers.append({"index": i, "name": repr(layer), "output_shape": [batch, *model.shapes[i]],
                       "params": int(sum(v.size for v in layer.params.values())),
                       "forward_ms": f_ms, "forward_share": f_share,
                       "backward_ms": b_ms, "backward_share": b_share})
    (lf, lf_share), (lb, lb_share), (up, up_share) = (
        part("loss forward"), part("loss backward"), part("update"))
    accounted = lf + lb + up + sum(r["forward_ms"] + (r["backward_ms"] or 0.0) for r in layers)
    return {"model": model.name, "layers": layers,
            "loss": {"name": "softmax cross-entropy", "forward_ms": lf, "forward_share": lf_share,
                     "backward_ms": lb, "backward_share": lb_share},
            "update": {"optimizer": OPTIMIZER, "ms": up, "share": up_share},
            "step_ms": step, "unaccounted_ms": step - accounted,
            "unaccounted_share": (step - accounted) / step}


def run_profile(args) -> int:
    for name in ALONE:
        if getattr(args, name, None):
            raise UsageError(f"--profile cannot be combined with --{name.replace('_', '-')}")
    names = args.model.split(",")
    for name in names:
        if name not in models.names():
            from ..suggest import did_you_mean
            raise UsageError(f"unknown model {name!r}{did_you_mean(name, models.names())} "
                             f"(choose {', '.join(models.names())})")
    device = select_device(args)
    backend.set_threads(args.threads)
    timer = timer_for_device()
    profiles = []
    for name in names:
        model = models.get(name)
        samples = measure_parts(model, args.batch_size, args.steps, args.warmup, timer)
        profiles.append(summarise(model, args.batch_size, samples))
    report = {"profile": True, "device": device, "timer": timer.source,
              "cpu_kernels": native.status() if device == "cpu" else None,
              "batch_size": args.batch_size, "threads": args.threads, "steps": args.steps,
              "warmup": args.warmup, "models": profiles}
    if emit_json(report, args):
        return 0
    for p in profiles:
        print_profile(p, report)
    return 0


def _ms(ms, share) -> str:
    return f"{ms:9.3f} {100 * share:5.1f}%" if ms is not None else f"{'-':>9} {'':6}"


def _row(index, label: str, shape: str, *cells) -> str:
    """One line of the table; each cell is (ms, share) or (None, None)."""
    return (f"  {index:>3}  {label:<38} {shape:<16} " + " ".join(_ms(*c) for c in cells)).rstrip()


def print_profile(p: dict, report: dict) -> None:
    print(f"dptrain bench --profile: {p['model']}, batch {report['batch_size']}, "
          f"{report['device']}, {report['threads']} thread(s), median of {report['steps']} "
          f"steps ({report['timer']})"
          + (f", CPU kernels {report['cpu_kernels']}" if report.get("cpu_kernels") else ""))
    print(f"  {'#':>3}  {'layer':<38} {'output':<16} {'forward ms':>16} {'backward ms':>16}")
    for r in p["layers"]:
        print(_row(r["index"], r["name"], "x".join(map(str, r["output_shape"])),
                   (r["forward_ms"], r["forward_share"]), (r["backward_ms"], r["backward_share"])))
    loss, update = p["loss"], p["update"]
    print(_row("", f"loss ({loss['name']})", "", (loss["forward_ms"], loss["forward_share"]),
               (loss["backward_ms"], loss["backward_share"])))
    print(_row("", f"optimiser update ({update['optimizer']})", "", (update["ms"], update["share"])))
    print(_row("", "unaccounted", "", (p["unaccounted_ms"], p["unaccounted_share"])))
    print(_row("", "step", "", (p["step_ms"], 1.0)))
