"""``dptrain bench --kernel-ops --device gpu``: each CUDA kernel family against the generic
CuPy code it replaces (NumPy with ``--device cpu``), on the layer shapes of real models, so
that a family is kept only where it is faster (issue 7; switch families with
DPTRAIN_KERNELS, backend.kernels).

    im2col     Conv2D's column building            kernels.im2col
    col2im     Conv2D's input gradient scatter     kernels.col2im
    maxpool    MaxPool2D forward + backward
    batchnorm  BatchNorm forward + backward (training): one-pass statistics and sums
    bn_relu_pool  BatchNorm -> ReLU -> MaxPool2D forward + backward, fused against unfused

On a CPU (``--device cpu``) the kernels run as compiled by g++ (nn/kernels_cuda/host.py):
that checks the comparison end to end, but its times say nothing about a GPU.
"""
from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import replace

import numpy as np

from .. import backend, models, nn
from ..nn import kernels


@contextmanager
def kernel_choice(mode: str, model):
    """``mode`` as the kernel choice of ``model``'s layers (which take it from their backend)
    and of the process default (which the bare im2col and col2im calls read)."""
    before, layer_backends = backend.kernels, [layer.backend for layer in model.layers]
    backend.set_kernels(mode)
    for layer, own in zip(model.layers, layer_backends):
        layer.backend = replace(own, kernels=mode)
    try:
        yield
    finally:
        backend.set_kernels(before)
        for layer, own in zip(model.layers, layer_backends):
            layer.backend = own


def _cases(model, model_name: str, batch: int):
    """(family, description, operation) for each distinct layer shape of the model."""
    xp, rng = backend.xp, np.random.default_rng(0)

    def rand(*shape):
        return xp.asarray(rng.standard_normal(shape), dtype=model.dtype)
    seen = set()
    for i, layer in enumerate(model.layers):
        shape = model.input_shapes[i]
        c, h, w = shape if len(shape) == 3 else (shape[0], 1, 1)
        out = layer.output_shape(shape)
        where = f"{model_name} {layer!r} on {'x'.join(map(str, shape))}"
        cases = []                     # (family, case, operation)
        if isinstance(layer, nn.Conv2D):
            x, geometry = rand(batch, c, h, w), (layer.kh, layer.kw, layer.stride, layer.padding)
            oh, ow = out[1], out[2]
            blocks = rand(layer.kh * layer.kw, batch * oh * ow, c)
            cases += [("im2col", where,
                       lambda x=x, g=geometry: kernels.im2col(x.transpose(0, 2, 3, 1), *g)),
                      ("col2im", where,
                       lambda b=blocks, s=(batch, h, w, c), g=geometry: kernels.col2im(b, s, *g))]
        elif isinstance(layer, (nn.MaxPool2D, nn.BatchNorm)):
            x, dy = rand(batch, *shape), rand(batch, *out)
            family = "maxpool" if isinstance(layer, nn.MaxPool2D) else "batchnorm"
            cases.append((family, where, lambda l=layer, x=x, dy=dy: _alone(l, x, dy)))
            if getattr(layer, "fused_tail", None) is not None:     # linked by nn/fusion.py
                chain = [layer, *layer.fused_tail]
                dy = rand(batch, *model.shapes[i + 2])
                cases.append(("bn_relu_pool", f"{where} + ReLU + {chain[2]!r}",
                              lambda c=chain, x=x, dy=dy: _chain(c, x, dy)))
        for family, case, op in cases:
            if (family, case) not in seen:
                seen.add((family, case))
                yield family, case, op


def _alone(layer, x, dy):
    """Forward and backward through the layer alone, unlinked from a fused tail for the call
    (the array code would otherwise run the linked run in nn/fused_cpu.py)."""
    tail, layer.fused_tail = getattr(layer, "fused_tail", None), None
    try:
        return layer.forward(x, True), layer.backward(dy)
    finally:
        if tail is not None:
            layer.fused_tail = tail


def _chain(layers, x, dy):
    """Forward and backward through the layers, as a training step runs them."""
    for layer in layers:
        x = layer.forward(x, True)
    for layer in reversed(layers):
        dy = layer.backward(dy)
    return x, dy


def _time(op, reps: int) -> float:
    op()                                    # compile, allocate
    backend.synchronize()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        op()
        backend.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def compare_kernel_ops(model_names, batch: int, reps: int = 20) -> dict:
    """Median times of every case with the generic code and with its kernels; per family the
    totals over all cases and the verdict (keep the kernels when they are faster)."""
    rows = []
    for name in model_names:
        model = models.get(name)
        for family, where, op in _cases(model, name, batch):
            with kernel_choice("generic", model):
                generic = _time(op, reps)
            with kernel_choice(family, model):
                kernel = _time(op, reps)
            rows.append({"family": family, "case": where, "generic_ms": generic * 1e3,
                         "kernel_ms": kernel * 1e3, "speedup": generic / kernel})
    families = {}
    for family in sorted({r["family"] for r in rows}):
        g = sum(r["generic_ms"] for r in rows if r["family"] == family)
        k = sum(r["kernel_ms"] for r in rows if r["family"] == family)
        families[family] = {"generic_ms": g, "kernel_ms": k, "speedup": g / k, "keep": k < g}
    return {"batch": batch, "rows": rows, "families": families}


@contextmanager
def host_kernels():
    """The kernels compiled for this CPU with g++ (nn/kernels_cuda/host.py) as the layers'
    launcher, for a comparison without a GPU."""
    import tempfile
    from ..nn import cuda_kernels
    from ..nn.kernels_cuda import host
    with tempfile.TemporaryDirectory(prefix="dptrain-kernels-") as directory:
        # a block of one thread and a chunk per channel: no thread start-ups in the times
        build = host.build(directory, reduce_block=1, reduce_blocks=1, optimize="-O2")
        before, cuda_kernels.host_launcher = cuda_kernels.host_launcher, build
        try:
            yield
        finally:
            cuda_kernels.host_launcher = before


def run_kernel_ops(args) -> int:
    from ..errors import UsageError
    from .shared import emit_json, select_device
    device = select_device(args)
    models = args.model.split(",")
    if device == "cpu":
        from ..nn.kernels_cuda import host
        if not host.available():
            raise UsageError("--kernel-ops on a CPU runs the CUDA kernels compiled with g++, "
                             "and there is no g++ here (or use --device gpu)")
        with host_kernels():
            report = compare_kernel_ops(models, args.batch_size, reps=args.steps)
    else:
        report = compare_kernel_ops(models, args.batch_size, reps=args.steps)
    report["device"] = device
    if emit_json(report, args):
        return 0
    print(f"dptrain bench --kernel-ops: {device}, batch {args.batch_size}, median of {args.steps}")
    if device == "cpu":
        print("  (CPU: the kernels' source compiled with g++, run on one thread; the times say "
              "nothing of a GPU)")
    for r in report["rows"]:
        print(f"  {r['family']:<12} {r['case']:<72} generic {r['generic_ms']:8.3f} ms  "
              f"kernel {r['kernel_ms']:8.3f} ms  x{r['speedup']:.2f}")
    for family, f in report["families"].items():
        print(f"  {family:<12} total: generic {f['generic_ms']:.3f} ms, kernels {f['kernel_ms']:.3f} ms "
              f"-> {'keep the kernels' if f['keep'] else 'generic is faster: leave this family out'}")
    return 0
