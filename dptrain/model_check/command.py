"""``dptrain check --model SPEC``: the layers' backprop, 1 against 2 ranks, the summary.

Exit 0 when every check passes, 1 when one fails (the report names the layer or the array),
2 for bad input (one ``dptrain: error:`` line: an unknown model, a broken model file, a
malformed shape). Runs as one process: it starts its own ranks.
"""
from __future__ import annotations

import json
import os
import tempfile

import numpy as np

from ..errors import UsageError

EXIT_CHECK_FAILED = 1
TIE_BREAK = 1e-2          # noise added to each layer's captured input, relative to its spread


def add_check_arguments(c) -> None:
    a = c.add_argument
    a("--model", required=True, metavar="SPEC",
      help="a zoo name, FILE.py:NAME or package.module:NAME (docs/own-model.md)")
    a("--input-shape", metavar="CxHxW",
      help="per-sample input shape (default: --dataset's, else a zoo model's own)")
    a("--dataset", metavar="SPEC",
      help="take the input shape and classes from this data set, and train on it for the rank "
           "check (default: synthetic data of the input shape)")
    a("--num-classes", type=int, metavar="K", help="classes (default: the data set's, else 10)")
    a("--batch-size", type=int, default=4, metavar="N",
      help="samples in the batch the layers are checked on")
    a("--tol", type=float, default=1e-6, metavar="X",
      help="largest relative error of a layer's gradients (float64)")
    a("--steps", type=int, default=3, metavar="N", help="training steps of the rank check")
    a("--rtol", type=float, default=1e-9, metavar="X",
      help="largest relative difference between 1 and 2 ranks' parameters")
    a("--timeout", type=float, default=600.0, metavar="SECONDS",
      help="deadline of each training run of the rank check")
    a("--no-ranks", action="store_true", help="skip the 1 against 2 ranks check")
    a("--json", action="store_true", help="one JSON object instead of the report")


def _shape_and_classes(args):
    from ..models import reference, zoo
    shape, classes = None, args.num_classes
    if not reference.is_reference(args.model) and args.model not in zoo.BUILDERS:
        try:
            zoo.get(args.model)              # the unknown name, with the closest ones
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if args.input_shape:
        shape = reference.parse_shape(args.input_shape)
    if args.dataset:
        from .. import data
        try:
            ds = data.load(args.dataset, num_classes=args.num_classes)
        except data.DataError as exc:
            raise UsageError(str(exc)) from None
        if shape is not None and tuple(shape) != tuple(ds.input_shape):
            raise UsageError(f"--input-shape {args.input_shape} differs from --dataset "
                             f"{args.dataset}'s {'x'.join(map(str, ds.input_shape))}")
        shape, classes = tuple(ds.input_shape), classes or ds.num_classes
    if shape is None:
        shape = zoo.DEFAULT_INPUT.get(args.model)
    if shape is None:
        raise UsageError(f"check: give --input-shape CxHxW or --dataset for --model {args.model}")
    return tuple(shape), classes or 10


def check_layers(model, batch_size: int, tol: float, seed: int = 0) -> list[dict]:
    """Every leaf layer of ``model`` (float64) on the inputs it sees in one training forward
    pass of a random batch (plus a little noise): [{index, layer, errors, ok}]."""
    from ..nn import BatchContext
    from .gradients import layer_errors, leaf_inputs
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch_size,) + tuple(model.input_shape))
    context = BatchContext(np.arange(batch_size), step=0, seed=seed)
    inputs = leaf_inputs(model, x, context)
    rows = []
    for i, (layer, inp) in enumerate(zip(model.layers, inputs)):
        layer.context = context              # dropout draws the same mask on every call
        # a little noise breaks exact ties (max pooling over a ReLU's zeros), where the
        # gradient is not defined and finite differences would disagree with any backward
        inp = inp + TIE_BREAK * (float(np.std(inp)) or 1.0) * rng.standard_normal(inp.shape)
        try:
            errors = layer_errors(layer, inp, rng)
            failure = None
        except Exception as exc:             # a user's layer: its failure is the finding
            errors, failure = {}, f"{type(exc).__name__}: {exc}"
        ok = failure is None and all(e < tol for e in errors.values())
        rows.append({"index": i, "layer": repr(layer), "errors": errors, "ok": ok,
                     **({"raised": failure} if failure else {})})
    return rows


def check_ranks(args, shape, classes, has_bn: bool) -> dict:
    """Train ``--steps`` steps on 1 and on 2 ranks in float64 and compare the parameters."""
    from .ranks import compare, find_mpiexec, ranks_reported, train, why_not_runnable
    reason = why_not_runnable()
    if reason:
        return {"skipped": reason}
    batch = 8
    dataset = args.dataset or f"synthetic:{'x'.join(map(str, shape))}:{5 * batch * args.steps}"
    flags = ["--model", args.model, "--dataset", dataset, "--dtype", "float64",
             "--max-steps", str(args.steps), "--batch-size", str(batch), "--threads", "1",
             "--eval-every", "0"]
    if args.num_classes:
        flags += ["--num-classes", str(args.num_classes)]
    if has_bn:
        flags.append("--sync-bn")
    out = {"dataset": dataset, "steps": args.steps, "rtol": args.rtol}
    with tempfile.TemporaryDirectory(prefix="dptrain-check-") as tmp:
        paths = {}
        for ranks in (1, 2):
            paths[ranks] = os.path.join(tmp, f"{ranks}.npz")
            metrics = os.path.join(tmp, f"{ranks}.jsonl")
            run = train(ranks, paths[ranks], flags + ["--metrics-out", metrics],
                        timeout=args.timeout)
            if run.returncode != 0:
                tail = "\n".join(run.output.strip().splitlines()[-5:])
                return {**out, "ok": False, "failed": f"the {ranks}-rank run ended with exit "
                        f"{run.returncode}:\n{tail}"}
            ran_as = ranks_reported(metrics)
            if ran_as != ranks:
                # an mpiexec of another MPI starts P separate one-rank runs, which agree
                return {**out, "ok": False, "failed": f"the {ranks}-rank run ran as {ran_as} "
                        f"rank(s): is {find_mpiexec()} the mpiexec of this Python's MPI?"}
        result = compare(paths[1], paths[2], rtol=args.rtol)
    if result.problem:
        return {**out, "ok": False, "failed": result.problem}
    worst = max(result.rows, key=lambda r: r[2], default=("", 0, 0.0, True))
    return {**out, "ok": result.ok, "arrays": len(result.rows), "largest": result.largest,
            "worst_array": worst[0],
            "differing": [name for name, _, _, ok in result.rows if not ok]}


def run_check(args) -> int:
    from .. import backend, models
    from ..nn import BatchNorm
    from ..train.validate import check_number
    from ..launch_env import launch_size
    if launch_size(include_slurm=False) > 1:       # under mpiexec -n P, not just in an allocation
        raise UsageError("check: run it as one process (it starts its own ranks), not under mpiexec")
    check_number("batch_size", args.batch_size)
    if not 1 <= args.steps <= 1000:
        raise UsageError(f"check: --steps {args.steps}: expected 1 to 1000")
    if not 0 < args.tol < 1 or not 0 < args.rtol < 1:
        raise UsageError("check: --tol and --rtol must lie in (0, 1)")
    if not args.timeout > 0:
        raise UsageError("check: --timeout must be positive")
    shape, classes = _shape_and_classes(args)
    backend.set_dtype("float64")
    try:
        model = models.get(args.model, shape, classes)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    layers = check_layers(model, args.batch_size, args.tol)
    has_bn = any(isinstance(layer, BatchNorm) for layer in model.layers)
    ranks = {"skipped": "--no-ranks"} if args.no_ranks else check_ranks(args, shape, classes, has_bn)
    summary = model.summary(batch_size=args.batch_size)
    passed = all(r["ok"] for r in layers) and ranks.get("ok", True)
    if args.json:
        print(json.dumps({"model": args.model, "input_shape": list(shape), "num_classes": classes,
                          "tol": args.tol, "layers": layers, "ranks": ranks,
                          "summary": summary.as_dict(), "passed": passed}))
    else:
        from .report import report
        print(report(args, shape, classes, layers, ranks, summary, passed))
    return 0 if passed else EXIT_CHECK_FAILED
