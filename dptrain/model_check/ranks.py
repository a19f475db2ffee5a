"""The same training on 1 rank and on P ranks, compared array by array.

P ranks must end with one rank's parameters (docs/guarantees.md: float64, the default
sampler, batch norms synchronised): a layer whose forward depends on which samples share
its local batch, or on the rank, breaks that, and is found here in a few steps instead of
as a worse accuracy after hours. Each run is `dptrain train` in a subprocess (the P-rank
one under `mpiexec -n P`, found next to this Python), in its own process group, killed
whole at its deadline: the check never hangs.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field

import numpy as np

from ..launch_env import find_mpiexec


def why_not_runnable() -> str | None:
    """Why a multi-rank run cannot be started here (None: it can)."""
    try:
        import mpi4py  # noqa: F401 (only whether it imports)
    except ImportError:
        return "mpi4py is not installed (pip install 'dptrain[mpi]')"
    if find_mpiexec() is None:
        return "no mpiexec next to this Python or on PATH"
    return None


@dataclass
class Run:
    returncode: int
    output: str


def train(ranks: int, weights: str, flags: list[str], device: str = "cpu",
          timeout: float = 600.0, echo: bool = False, cwd: str | None = None) -> Run:
    """`dptrain train FLAGS --save-weights WEIGHTS` on ``ranks`` ranks; its output kept."""
    cmd = [sys.executable, "-m", "dptrain", "train", "--device", device, "--quiet",
           "--save-weights", weights, *flags]
    if device == "gpu" and ranks > 1:
        cmd.append("--allow-gpu-sharing")
    if ranks > 1:
        cmd = [find_mpiexec() or "mpiexec", "-n", str(ranks), *cmd]
    if echo:
        print("$", " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, stdout=None if echo else subprocess.PIPE,
                            stderr=None if echo else subprocess.STDOUT, text=True,
                            start_new_session=True, cwd=cwd)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return Run(124, (out or "") + f"\n(killed after {timeout:.0f} s)")
    return Run(proc.returncode, out or "")


def ranks_reported(metrics: str) -> int | None:
    """The rank count a run's metrics file reports on its first line (None: unreadable)."""
    try:
        with open(metrics) as f:
            return json.loads(f.readline()).get("ranks")
    except (OSError, ValueError, AttributeError):
        return None


@dataclass
class Comparison:
    rows: list = field(default_factory=list)      # (name, size, max relative difference, ok)
    problem: str | None = None                    # arrays missing on one side

    @property
    def ok(self) -> bool:
        return self.problem is None and all(ok for *_, ok in self.rows)

    @property
    def largest(self) -> float:
        return max((rel for _, _, rel, _ in self.rows), default=0.0)


def _order(name: str):
    return [int(p) if p.isdigit() else p for p in name.split(".")]


def compare(one: str, many: str, rtol: float = 1e-9, atol: float = 1e-12) -> Comparison:
    """Two --save-weights files, array by array ("meta", the model record, is not compared):
    the largest relative difference, at most ``rtol`` (values below atol / rtol: at most
    ``atol`` apart)."""
    with np.load(one) as a, np.load(many) as b:
        names_a, names_b = set(a.files) - {"meta"}, set(b.files) - {"meta"}
        if names_a != names_b:
            return Comparison(problem=f"different arrays: {sorted(names_a ^ names_b)}")
        result = Comparison()
        for k in sorted(names_a, key=_order):
            x, y = a[k].astype(np.float64), b[k].astype(np.float64)
            # relative to each value, but values below atol / rtol are held to atol: a conv
            # bias before a batch norm has a zero gradient, and moves by rounding noise only
            floor = atol / rtol
            rel = float((np.abs(x - y) / np.maximum(np.abs(x), floor)).max()) if x.size else 0.0
            result.rows.append((k, int(x.size), rel, rel <= rtol))
    return result
