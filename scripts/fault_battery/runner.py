"""Runs fault-battery cases as a user would (the installed dptrain, under mpiexec) and
classifies each: held, defect (an expectation failed: which) or hang (deadline passed: the
case's processes are killed whole)."""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .case import Action, Case
from .procs import Tracker

POLL_S = 0.05
STOP = threading.Event()      # set on Ctrl-C: every running case stops and cleans up


@dataclass
class Result:
    name: str
    kind: int
    verdict: str          # held, defect, hang
    seconds: float
    reason: str = ""
    rc: int | None = None   # the job's exit status (None for a hang)


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _start(argv: list[str], tmp: Path, env: dict, tag: str) -> subprocess.Popen:
    return subprocess.Popen(argv, cwd=tmp, env=env, stdin=subprocess.DEVNULL,
                            stdout=open(tmp / f"_{tag}stdout", "wb"),
                            stderr=open(tmp / f"_{tag}stderr", "wb"),
                            start_new_session=True)


class _ActionState:
    def __init__(self, action: Action | None) -> None:
        self.action = action
        self.done = action is None
        self.fired_at: float | None = None
        self.resumed = False
        self.repeated = False
        self.then: subprocess.Popen | None = None
        self.problem = ""

    def ready(self, tmp: Path, elapsed: float) -> bool:
        a = self.action
        if elapsed < a.after:
            return False
        if a.when_file:
            path = tmp / a.when_file
            if not path.exists():
                return False
            if a.when_text and not re.search(a.when_text, path.read_text(errors="replace")):
                return False
        return True

    def _send(self, tracker: Tracker, sig: int) -> None:
        target = self.action.target
        if target == "job":
            tracker.poll()
            tracker.signal_all(sig)
            return
        pid = tracker.mpiexec_pid() if target == "mpiexec" else \
            tracker.rank_pid(int(target.split(":")[1]))
        if pid is None:
            self.problem = f"no process {target} to signal"
            return
        os.kill(pid, sig)

    def step(self, tmp: Path, elapsed: float, tracker: Tracker, env: dict) -> None:
        a = self.action
        if self.fired_at is None:
            if not self.ready(tmp, elapsed):
                return
            self.fired_at = elapsed
            if a.signal is not None:
                self._send(tracker, a.signal)
            if a.then is not None:
                self.then = _start(a.then, tmp, env, "then_")
                tracker.add_root(self.then.pid)
        if a.resume_after is not None and not self.resumed \
                and elapsed >= self.fired_at + a.resume_after:
            self._send(tracker, signal.SIGCONT)
            self.resumed = True
        if a.repeat_signal_after is not None and not self.repeated \
                and elapsed >= self.fired_at + a.repeat_signal_after:
            self._send(tracker, a.signal)
            self.repeated = True
        self.done = ((a.resume_after is None or self.resumed)
                     and (a.repeat_signal_after is None or self.repeated))


def run_case(case: Case, keep: bool = False) -> Result:
    tmp = Path(tempfile.mkdtemp(prefix=f"fb-{case.name}-"))
    tracker = Tracker()
    t0 = time.monotonic()
    try:
        if case.setup:
            case.setup(tmp)
        before = {rel: _digest(tmp / rel) for rel in case.intact}
        env = case.environment()
        job = _start(case.command(tmp), tmp, env, "")
        tracker.add_root(job.pid)
        state = _ActionState(case.action)
        t0 = time.monotonic()
        while True:
            elapsed = time.monotonic() - t0
            tracker.poll()
            if not state.done:
                state.step(tmp, elapsed, tracker, env)
            finished = job.poll() is not None and (state.then is None
                                                   or state.then.poll() is not None)
            if finished:
                break                 # (an action not yet due is moot once the job ended)
            if elapsed > case.deadline:
                tracker.kill_all()
                job.wait()
                return Result(case.name, case.kind, "hang", elapsed,
                              f"still running after {case.deadline:.0f} s; killed")
            if STOP.is_set():
                raise KeyboardInterrupt
            time.sleep(POLL_S)
        seconds = time.monotonic() - t0
        reason = _judge(case, tmp, job.returncode, state, before)
        return Result(case.name, case.kind, "defect" if reason else "held", seconds, reason,
                      job.returncode)
    finally:
        tracker.kill_all()
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def _last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:160] if lines else "(no stderr)"


def _judge(case: Case, tmp: Path, rc: int, state: _ActionState, before: dict) -> str:
    err = (tmp / "_stderr").read_text(errors="replace")
    if state.problem:
        return state.problem
    if rc not in case.expected_rcs():
        return f"exit {rc}, expected {sorted(case.expected_rcs())}: {_last_line(err)}"
    if case.stderr and not re.search(case.stderr, err):
        return f"stderr lacks /{case.stderr}/: {_last_line(err)}"
    if case.stderr_not and re.search(case.stderr_not, err):
        return f"stderr has /{case.stderr_not}/"
    if state.then is not None:
        then_err = (tmp / "_then_stderr").read_text(errors="replace")
        a = case.action
        if a.then_rc and state.then.returncode not in a.then_rc:
            return (f"second run exit {state.then.returncode}, expected {sorted(a.then_rc)}:"
                    f" {_last_line(then_err)}")
        if a.then_stderr and not re.search(a.then_stderr, then_err):
            return f"second run stderr lacks /{a.then_stderr}/: {_last_line(then_err)}"
    for rel, digest in before.items():
        if _digest(tmp / rel) != digest:
            return f"{rel} changed or vanished"
    for rel in case.absent:
        if (tmp / rel).exists():
            return f"{rel} exists"
    if case.check:
        return case.check(tmp, rc) or ""
    return ""
