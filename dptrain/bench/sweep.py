"""``dptrain bench --batch-sizes 64,256,1024 [--device gpu]``: step time and achieved TFLOP/s
over models and batch sizes, next to PyTorch on the same device in the same run.

On a GPU PyTorch runs with cuDNN (autotuned), the comparison the source thesis ends with;
dptrain uses CuPy, cuBLAS GEMMs and its own kernels (``--kernels auto,generic`` also times the
generic array code, to see what the kernels buy). Rounds alternate dptrain and PyTorch, and
the report gives medians over rounds. The issue's target is dptrain / PyTorch <= 1.5 at
batch 256 on an H100/H200.
"""
from __future__ import annotations

import importlib.util
import os
import statistics

from .. import backend
from ..errors import UsageError
from .shared import TORCH_MODELS, run_torch_reference, select_device
from .memory import step_peak_mb
from .stepbench import time_training_step

TARGET_BATCH, TARGET_RATIO = 256, 1.5


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v]
    except ValueError:
        raise UsageError(f"{flag} {text}: expected a comma list of positive integers") from None
    if not values or min(values) <= 0:
        raise UsageError(f"{flag} {text}: expected a comma list of positive integers")
    return values


def run_sweep(args) -> int:
    from .. import models
    names = args.model.split(",")
    for name in names:
        if name not in models.names():
            from ..suggest import did_you_mean
            raise UsageError(f"unknown model {name!r}{did_you_mean(name, models.names())} "
                             f"(choose {', '.join(models.names())})")
    batches = _int_list(args.batch_sizes, "--batch-sizes")
    modes = args.kernels.split(",")             # each: auto, generic or families joined by +
    chosen = backend.kernels
    for mode in modes:
        try:
            backend.set_kernels(mode.replace("+", ","))
        except ValueError as exc:
            raise UsageError(f"--kernels: {exc}") from None
    backend.set_kernels(chosen)
    graphs = args.cuda_graph.split(",")
    if not graphs or any(g not in ("off", "on") for g in graphs):
        raise UsageError(f"--cuda-graph {args.cuda_graph}: choose off, on or off,on")
    device = select_device(args)
    if "on" in graphs and not device.startswith("gpu"):
        raise UsageError("--cuda-graph on needs --device gpu (CUDA graphs)")
    backend.set_threads(args.threads)
    torch_device = "cuda" if device.startswith("gpu") else "cpu"
    with_torch = not args.no_torch and importlib.util.find_spec("torch") is not None
    from .stream import BenchStream
    ours: dict = {}            # (model, batch, kernels, graph) -> [median step s per round]
    graph_state: dict = {}     # (model, batch, kernels) -> replayed, or why eager
    theirs: dict = {}          # (model, batch) -> [median step s per round]
    flops: dict = {}
    peaks: dict = {}           # (model, batch, kernels) -> dptrain's peak GPU memory (GPU only)
    torch_peaks: dict = {}     # (model, batch) -> PyTorch's max_memory_allocated
    torch_info: dict = {}

    def report() -> dict:
        info = torch_info.get("last")
        return {"device": _device_description(device), "rounds": args.rounds,
                "steps_per_round": args.steps,
                "rows": _rows(ours, graph_state, theirs, flops, peaks, torch_peaks),
                "torch": None if info is None else
                {"version": info["torch"], "device": info["device"], "cudnn": info["cudnn"]}}
    torch_names = [n for n in names if with_torch and n in TORCH_MODELS]
    planned = args.rounds * (len(names) * len(modes) * len(batches) * len(graphs) + len(torch_names))
    stream = BenchStream(args, planned, report, lambda rep: _print_sweep(rep, torch_device))
    with stream.watch():
        for rnd in range(args.rounds):
            for name in names:
                for mode in modes:
                    backend.set_kernels(mode.replace("+", ","))
                    for b in batches:
                        for g in graphs:
                            what = f"{name} batch {b} {mode}" + (" graph" if g == "on" else "")
                            stream.start(f"round {rnd + 1}, {what}")
                            res = time_training_step(name, b, args.steps, args.warmup,
                                                     graph=g == "on")
                            ours.setdefault((name, b, mode, g), []).append(res["median_step_s"])
                            graph_state[(name, b, mode)] = res.get("cuda_graph")
                            flops[name] = res["training_flops_per_image"]
                            if rnd == 0 and g == "off":   # apart from the timed steps: memory.py
                                peaks[(name, b, mode)] = step_peak_mb(name, b)
                            stream.finished(f"  round {rnd + 1}/{args.rounds}: {what}: dptrain "
                                            f"{res['median_step_s'] * 1e3:.2f} ms")
                backend.set_kernels(chosen)
                if name in torch_names:
                    stream.start(f"round {rnd + 1}, {name} PyTorch")
                    for r in run_torch_reference(args, name, batches, torch_device):
                        theirs.setdefault((name, r["batch"]), []).append(r["median_step_s"])
                        if r.get("max_memory_allocated_mb") is not None:
                            torch_peaks[(name, r["batch"])] = r["max_memory_allocated_mb"]
                        torch_info["last"] = r
                    stream.finished(f"  round {rnd + 1}/{args.rounds}: {name} PyTorch " + ", ".join(
                        f"batch {b} {theirs[(name, b)][-1] * 1e3:.2f} ms" for b in batches
                        if len(theirs.get((name, b), [])) > rnd))
    return stream.close()


def _rows(ours, graph_state, theirs, flops, peaks, torch_peaks) -> list[dict]:
    rows = []
    for (name, b, mode, g), times in ours.items():
        step = statistics.median(times)
        row = {"model": name, "batch": b, "kernels": mode, "cuda_graph": g,
               "dptrain_step_ms": step * 1e3,
               "dptrain_tflops": flops[name] * b / step / 1e12,
               "training_gflop_per_step": flops[name] * b / 1e9}
        if g == "off" and peaks.get((name, b, mode)) is not None:       # eager steps
            row.update({"dptrain_peak_mb": peaks[(name, b, mode)]["peak_mb"],
                        "dptrain_reserved_mb": peaks[(name, b, mode)]["reserved_mb"]})
        if (name, b) in torch_peaks:
            row["torch_max_memory_allocated_mb"] = torch_peaks[(name, b)]
        if g == "on":
            row["cuda_graph_state"] = graph_state[(name, b, mode)]
        if (name, b) in theirs:
            t = statistics.median(theirs[(name, b)])
            row.update({"torch_step_ms": t * 1e3, "torch_tflops": flops[name] * b / t / 1e12,
                        "dptrain_over_torch": step / t})
        rows.append(row)
    return rows


def _print_sweep(report: dict, torch_device: str) -> None:
    rows, torch_info = report["rows"], report["torch"]
    print(f"dptrain bench: {report['device']}, {report['rounds']} rounds x "
          f"{report['steps_per_round']} steps (medians)"
          + (f"; PyTorch {torch_info['version']}" + (f" + cuDNN {torch_info['cudnn']}" if torch_info["cudnn"] else "")
             if torch_info else ""))
    print(f"  {'model':<11} {'batch':>5} {'kernels':<13} {'dptrain ms':>10} {'TFLOP/s':>8} "
          f"{'PyTorch ms':>10} {'TFLOP/s':>8} {'ratio':>6}")
    for r in rows:
        theirs_ms = f"{r['torch_step_ms']:10.2f} {r['torch_tflops']:8.3f} {r['dptrain_over_torch']:6.2f}" \
            if "torch_step_ms" in r else f"{'-':>10} {'-':>8} {'-':>6}"
        mark = ""
        if r["batch"] == TARGET_BATCH and "dptrain_over_torch" in r and torch_device == "cuda":
            mark = "  (target <= 1.5: " + ("met)" if r["dptrain_over_torch"] <= TARGET_RATIO else "missed)")
        kernels = r["kernels"] + ("+graph" if r["cuda_graph"] == "on" else "")
        print(f"  {r['model']:<11} {r['batch']:>5} {kernels:<13} {r['dptrain_step_ms']:10.2f} "
              f"{r['dptrain_tflops']:8.3f} {theirs_ms}{mark}")
        if r.get("cuda_graph_state", "replayed") != "replayed":
            print(f"      (--cuda-graph on ran eagerly: {r['cuda_graph_state']})")
    memory = [r for r in rows if "dptrain_peak_mb" in r]
    if memory:                  # GPU only (memory.py): peak bytes in use, and reserved
        print("  peak GPU memory, MiB (dptrain: CuPy pool in use / reserved; PyTorch: "
              "max_memory_allocated)")
        for r in memory:
            torch_mb = f"{r['torch_max_memory_allocated_mb']:10.1f}" \
                if "torch_max_memory_allocated_mb" in r else f"{'-':>10}"
            print(f"  {r['model']:<11} {r['batch']:>5} {r['kernels']:<8} "
                  f"{r['dptrain_peak_mb']:10.1f} / {r['dptrain_reserved_mb']:8.1f} {torch_mb}")


def _device_description(device: str) -> str:
    if not device.startswith("gpu"):
        import platform
        return f"CPU ({platform.processor() or platform.machine()}), {os.cpu_count()} cores"
    cupy = backend.cupy_module()
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return f"{name} ({props['totalGlobalMem'] / 2**30:.0f} GiB), CuPy {cupy.__version__}"
