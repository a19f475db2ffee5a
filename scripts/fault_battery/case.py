"""What a fault-battery case is: how to run it, what to do during the run, what must hold."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

BIN = Path(sys.executable).parent          # the venv's bin: dptrain and mpiexec beside python
DPTRAIN = str(BIN / "dptrain")
MPIEXEC = str(BIN / "mpiexec")

# Tiny, fast runs: an MLP on 8x8 synthetic images.
TINY = ["--model", "mlp", "--dataset", "synthetic:1x8x8:200", "--batch-size", "16",
        "--quiet"]
ERROR_LINE = r"(?m)^dptrain: error: "


def train(*args: str) -> list[str]:
    return [DPTRAIN, "train", *args]


def mpi(n: int, *args: str) -> list[str]:
    """`mpiexec -n N dptrain train ARGS`."""
    return [MPIEXEC, "-n", str(n), *train(*args)]


def mpmd(*groups: tuple[int, list[str]] | tuple[int, list[str], str]) -> list[str]:
    """`mpiexec -n N1 [-wdir D1] dptrain train A1 : -n N2 ... A2`: ranks given different things."""
    argv = [MPIEXEC]
    for i, group in enumerate(groups):
        n, args = group[0], group[1]
        if i:
            argv.append(":")
        argv += ["-n", str(n)]
        if len(group) > 2:
            argv += ["-wdir", group[2]]
        argv += train(*args)
    return argv


@dataclass
class Action:
    """Something done to the job while it runs, once `after` seconds passed and `when_file`
    (relative to the case's directory; `_stdout`/`_stderr` are the job's own) exists and
    matches `when_text`.

    `signal` goes to `target`: "job" (every process of the case's session), "mpiexec", or
    "rank:R" (the process whose PMI_RANK is R). `resume_after` sends SIGCONT that many seconds
    after (a pause). `then` is another argv started at that moment (a concurrent run); its
    outcome must match `then_rc` and `then_stderr`.
    """
    after: float = 0.0
    when_file: str | None = None
    when_text: str | None = None
    signal: int | None = None
    target: str = "job"
    resume_after: float | None = None
    then: list[str] | None = None
    then_rc: frozenset = frozenset()
    then_stderr: str | None = None
    repeat_signal_after: float | None = None   # send the same signal again (a second SIGTERM)


@dataclass
class Case:
    name: str
    kind: int                                   # 1..8, the kinds of issue 20
    argv: list[str] | Callable[[Path], list[str]]
    rc: frozenset | set | int = 0
    stderr: str | None = None                  # regex that must match the job's stderr
    stderr_not: str | None = None              # regex that must NOT match (a traceback)
    deadline: float = 30.0
    env: dict = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    action: Action | None = None
    intact: list[str] = field(default_factory=list)    # files whose bytes must not change
    absent: list[str] = field(default_factory=list)    # files that must not exist afterwards
    check: Callable[[Path, int], str | None] | None = None  # (dir, rc) -> a reason, or None

    def expected_rcs(self) -> frozenset:
        return frozenset([self.rc]) if isinstance(self.rc, int) else frozenset(self.rc)

    def command(self, tmp: Path) -> list[str]:
        return self.argv(tmp) if callable(self.argv) else list(self.argv)

    def environment(self) -> dict:
        env = dict(os.environ)
        env.pop("DPTRAIN_FAULT", None)
        env.pop("DPTRAIN_CHECK_COLLECTIVES", None)
        env.update(self.env)
        return env
