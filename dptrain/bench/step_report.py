"""``dptrain bench`` (no mode flag): dptrain's single-process training step next to an sgemm
roof and PyTorch, in rounds that alternate the two; each round printed as it finishes
(stream.py), the report's medians at the end."""
from __future__ import annotations

import statistics

from .. import backend, native
from .shared import run_torch_reference, torch_skip_reason
from .stepbench import peak_rss_mb, sgemm_gflops, time_training_step


def run_step_bench(args, shape) -> int:
    from .stream import BenchStream
    backend.set_threads(args.threads)
    skipped = torch_skip_reason(args, args.model)
    with_torch = skipped is None
    ours, theirs, info = [], [], {}
    roof = {}

    def report() -> dict:
        if not ours:
            return {"model": args.model, "batch_size": args.batch_size, "threads": args.threads}
        if not roof:                  # RSS before the GEMM roof allocates its matrices
            roof.update(rss=peak_rss_mb(), peak=sgemm_gflops())
        return _report(args, ours, theirs, info, roof)
    stream = BenchStream(args, args.rounds * (1 + with_torch), report,
                         lambda rep: _print_step(rep, args, skipped))
    with stream.watch():
        for rnd in range(args.rounds):
            stream.start(f"round {rnd + 1}, dptrain")
            res = time_training_step(args.model, args.batch_size, args.steps, args.warmup,
                                     input_shape=shape)
            ours.append(res["median_step_s"])
            info["flops"] = res["training_flops_per_image"]
            stream.finished(f"  round {rnd + 1}/{args.rounds}: dptrain step "
                            f"{res['median_step_s'] * 1e3:.2f} ms")
            if with_torch:
                stream.start(f"round {rnd + 1}, PyTorch")
                before = len(theirs)
                for torch_info in run_torch_reference(args, args.model, [args.batch_size]):
                    theirs.append(torch_info["median_step_s"])
                    info["torch"] = torch_info["torch"]
                stream.finished(f"  round {rnd + 1}/{args.rounds}: PyTorch step "
                                f"{theirs[-1] * 1e3:.2f} ms" if len(theirs) > before else None)
    return stream.close()


def _report(args, ours, theirs, info, roof) -> dict:
    step, peak, flops = statistics.median(ours), roof["peak"], info["flops"]
    gflops = flops * args.batch_size / step / 1e9
    report = {
        "model": args.model, "batch_size": args.batch_size, "threads": args.threads,
        "rounds": args.rounds, "steps_per_round": args.steps,
        "dptrain_step_ms": step * 1e3, "images_per_s": args.batch_size / step,
        "training_mflop_per_image": flops / 1e6,
        "achieved_gflops": gflops, "sgemm_peak_gflops": peak, "fraction_of_peak": gflops / peak,
        "floor_step_ms": flops * args.batch_size / peak / 1e6,
        "peak_rss_mb": roof["rss"], "cpu_kernels": native.status(),
    }
    if theirs:
        t = statistics.median(theirs)
        report.update({"torch_step_ms": t * 1e3, "torch_version": info["torch"],
                       "dptrain_over_torch": step / t})
    return report


def _print_step(report: dict, args, skipped) -> None:
    if "dptrain_step_ms" not in report:
        return
    print(f"dptrain bench: {args.model}, batch {args.batch_size}, {args.threads} thread(s), "
          f"{args.rounds} rounds x {args.steps} steps (medians), CPU kernels "
          f"{report['cpu_kernels']}")
    rows = [("dptrain step", f"{report['dptrain_step_ms']:.2f} ms"),
            ("images/s", f"{report['images_per_s']:.0f}"),
            ("training work", f"{report['training_mflop_per_image']:.2f} MFLOP/image"),
            ("achieved", f"{report['achieved_gflops']:.1f} GFLOP/s = "
                         f"{100 * report['fraction_of_peak']:.1f}% of sgemm peak "
                         f"{report['sgemm_peak_gflops']:.1f} GFLOP/s"),
            ("arithmetic floor", f"{report['floor_step_ms']:.2f} ms"),
            ("peak RSS", f"{report['peak_rss_mb']:.1f} MB")]
    if "torch_step_ms" in report:
        rows += [(f"PyTorch {report['torch_version']} step", f"{report['torch_step_ms']:.2f} ms"),
                 ("dptrain / PyTorch", f"{report['dptrain_over_torch']:.3f}")]
    elif skipped:
        rows.append(("PyTorch", f"not measured: {skipped}"))
    for k, v in rows:
        print(f"  {k:<22} {v}")
