"""What the sub-benchmarks of ``dptrain bench`` share: the device, the JSON report, and the
PyTorch side (which models it has, why its rows are left out, running it in a process of its
own). Apart from command.py, so that the sub-benchmarks never import the command that
dispatches to them (no import circle in bench/).
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

from .. import backend
from ..errors import UsageError

# the models torch_reference.build knows
TORCH_MODELS = ("thesis-cnn", "mlp", "mlp-wide", "vgg-cifar", "resnet-20")


def torch_skip_reason(args, model: str) -> str | None:
    """Why the PyTorch comparison rows are left out, or None when they are measured."""
    if args.no_torch:
        return "--no-torch"
    if ":" in model:
        return f"{model} is a model of your own, which has no PyTorch counterpart"
    if model not in TORCH_MODELS:
        return f"no PyTorch reference model for {model} (there is one for {', '.join(TORCH_MODELS)})"
    if importlib.util.find_spec("torch") is None:
        return "PyTorch is not installed (make bench installs its CPU build)"
    return None


def select_device(args) -> str:
    """Use --device for a benchmark; a missing GPU is bad input."""
    try:
        return backend.use_device(args.device)
    except (ValueError, backend.DeviceError) as exc:
        message = str(exc)
        raise UsageError(message if message.startswith("--device")
                         else f"--device {args.device}: {message}") from None


def emit_json(report: dict, args) -> bool:
    """Write the report to --json-out, print it with --json; True when it was printed (no
    table wanted)."""
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=1)
    if args.json:
        print(json.dumps(report))
    return args.json


def run_torch_reference(args, model: str, batches: list[int], device: str = "cpu") -> list[dict]:
    """PyTorch's step times for ``batches`` (torch_reference.py, in a process of its own so
    that torch does not weigh on dptrain's memory); [] with a message if it fails."""
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    cmd = [sys.executable, "-m", "dptrain.bench.torch_reference", "--model", model,
           "--batches", ",".join(map(str, batches)), "--threads", str(args.threads),
           "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", device]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        print(f"dptrain bench: PyTorch reference failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
        return []
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
