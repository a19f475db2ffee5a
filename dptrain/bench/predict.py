"""``dptrain bench --predict``: step time and speedup for P = 1 ... 1024 from measured per-layer
compute times (or, for Lee et al.'s VGG-A case, FLOP counts at an assumed node rate) and
the alpha-beta network model (parallel/predict.py)."""
from __future__ import annotations

import time

import numpy as np

from .. import backend, models, nn, optim
from ..comm.emulated import AlphaBeta, parse_spec
from ..errors import UsageError
from ..nn import Dense
from ..parallel import schedules as registered_schedules
from ..parallel.predict import LayerTimes, scaling_table

RANKS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
SCHEDULES = registered_schedules.Names()          # every registered schedule, one column each
# Lee et al. (HiPC 2017): VGG-A on ImageNet, 128 nodes, mini-batch 256 and 512
LEE_REPORTED = {256: 62.97, 512: 77.97}


def _param_bytes(layer, itemsize=4) -> int:
    return sum(int(np.prod(v.shape)) for v in layer.params.values()) * itemsize


def measure_layer_times(model, batch: int, steps: int = 5) -> LayerTimes:
    """Median forward, backward and update time of every layer, on this process's device."""
    rng = np.random.default_rng(0)
    xp = backend.xp
    x = xp.asarray(rng.random((batch,) + model.input_shape, dtype=np.float32), dtype=model.dtype)
    y = xp.asarray(rng.integers(0, model.output_shape[0], batch))
    loss, opt = nn.SoftmaxCrossEntropy(), optim.get("sgd", model)
    n = len(model.layers)
    fwd, bwd, upd = ([[] for _ in range(n)] for _ in range(3))
    started = {}

    def start(i):
        started[i] = time.perf_counter()

    def stop(times):
        return lambda i: times[i].append(time.perf_counter() - started[i])
    for _ in range(steps + 1):                               # the first round warms up
        # the model's hooks bracket each layer, inside residual blocks too
        h = model.forward(x, True, before_layer=start, after_layer=stop(fwd))
        loss.forward(h, y)
        model.backward(loss.backward(), before_layer=start, after_layer=stop(bwd))
        for i, layer in enumerate(model.layers):
            t0 = time.perf_counter()
            if layer.params:
                opt.update(i)
            upd[i].append(time.perf_counter() - t0)
    med = [lambda v: float(np.median(v[1:])) if len(v) > 1 else 0.0][0]
    return LayerTimes([med(v) for v in fwd], [med(v) for v in bwd], [med(v) for v in upd],
                      [_param_bytes(layer) for layer in model.layers],
                      {i: (layer.n_in, layer.n_out) for i, layer in enumerate(model.layers)
                       if isinstance(layer, Dense)}, batch)


def flop_layer_times(model, batch: int, flops_per_s: float) -> LayerTimes:
    """Compute times from FLOP counts: backward = 2 x forward (1 x for the first layer, which
    needs no input gradient); updates ~ 4 memory passes over the parameters at 20 GB/s."""
    summary = model.summary()
    fwd = [r.flops * batch / flops_per_s for r in summary.rows]
    bwd = [2 * f for f in fwd]
    bwd[0] = fwd[0]
    pb = [_param_bytes(layer) for layer in model.layers]
    upd = [4 * b / 20e9 for b in pb]
    return LayerTimes(fwd, bwd, upd, pb, {i: (layer.n_in, layer.n_out) for i, layer in
                                          enumerate(model.layers) if isinstance(layer, Dense)}, batch)


def predict_model(args) -> dict:
    net_spec = parse_spec(args.net)
    net = AlphaBeta(net_spec["latency_s"], net_spec["bandwidth_bps"])
    backend.set_threads(args.threads)
    model = models.get(args.model)
    times = measure_layer_times(model, args.batch_size)
    rows = scaling_table(times, net, RANKS, SCHEDULES, bucket_bytes=int(args.bucket_mb * 2**20),
                         flops_per_s=args.node_gflops * 1e9)
    return {"model": args.model, "batch_per_rank": args.batch_size, "net": args.net,
            "measured_compute_ms": (sum(times.fwd) + sum(times.bwd) + sum(times.upd)) * 1e3,
            "rows": rows}


def predict_lee(args) -> dict:
    """Strong scaling of VGG-A at global batch 256 and 512 on up to 128 nodes."""
    net_spec = parse_spec(args.net)
    net = AlphaBeta(net_spec["latency_s"], net_spec["bandwidth_bps"])
    backend.set_dtype("float32")
    model = models.get("vgg-a", num_classes=1000)
    cases = []
    for gb, reported in LEE_REPORTED.items():
        times = flop_layer_times(model, gb, args.node_gflops * 1e9)
        ranks = [p for p in RANKS if p <= 128]
        table = scaling_table(times, net, ranks, ["blocking", "overlap"], global_batch=gb,
                              bucket_bytes=int(args.bucket_mb * 2**20),
                              flops_per_s=args.node_gflops * 1e9)
        at128 = {r["schedule"]: r["speedup"] for r in table if r["ranks"] == 128}
        cases.append({"global_batch": gb, "reported_speedup_128": reported,
                      "predicted_speedup_128": at128, "rows": table})
    return {"model": "vgg-a", "params": model.num_params(), "node_gflops": args.node_gflops,
            "net": args.net, "cases": cases}


def print_prediction(report: dict) -> None:
    if "cases" in report:
        print(f"Lee et al. case: VGG-A ({report['params']:,} parameters), node {report['node_gflops']:g} "
              f"GFLOP/s (assumed), network {report['net']} (assumed); strong scaling from 1 node")
        for case in report["cases"]:
            pred = case["predicted_speedup_128"]
            print(f"  global batch {case['global_batch']}: reported {case['reported_speedup_128']}x "
                  f"at 128 nodes; predicted overlap {pred['overlap']:.2f}x, blocking "
                  f"{pred['blocking']:.2f}x")
            for r in case["rows"]:
                if r["schedule"] == "overlap":
                    print(f"    P={r['ranks']:>4}  step {r['step_ms']:9.1f} ms  compute "
                          f"{r['compute_ms']:9.1f}  comm {r['comm_ms']:8.1f}  exposed "
                          f"{r['exposed_ms']:8.1f}  speedup {r['speedup']:6.2f}")
        return
    print(f"prediction: {report['model']}, batch {report['batch_per_rank']} per rank (weak scaling), "
          f"network {report['net']}; measured compute {report['measured_compute_ms']:.1f} ms/step")
    print(f"  {'P':>5} " + "".join(f"{s + ' ms':>16}{'speedup':>9}" for s in SCHEDULES))
    by_p = {}
    for r in report["rows"]:
        by_p.setdefault(r["ranks"], {})[r["schedule"]] = r
    for p, cells in by_p.items():
        print(f"  {p:>5} " + "".join(f"{cells[s]['step_ms']:>16.2f}{cells[s]['speedup']:>9.1f}"
                                     for s in SCHEDULES))


def run_predict(args) -> int:
    if args.net is None:
        args.net = "bw=64Gbit,lat=2us" if args.lee else "bw=10Gbit,lat=5us"
    if args.node_gflops is None:
        args.node_gflops = 1000.0 if args.lee else 100.0
    try:
        report = predict_lee(args) if args.lee else predict_model(args)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    from .shared import emit_json
    if not emit_json(report, args):
        print_prediction(report)
    return 0
