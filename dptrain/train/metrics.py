"""Metrics JSONL (one object per line, rank 0 only) and the progress bar.

The schema is docs/metrics.md: every line carries ``schema`` (its version), ``run_id``
(one per invocation, so runs appended to one file stay apart) and ``type``, one of
LINE_TYPES. Epochs are numbered from 1 everywhere; ``step`` counts steps done.
"""
from __future__ import annotations

import json
import secrets
import sys
import time

SCHEMA_VERSION = 1
LINE_TYPES = ("run", "step", "epoch", "eval")


def new_run_id() -> str:
    """UTC start time and 6 random hex digits: sortable, and unique in practice."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)


class MetricsWriter:
    def __init__(self, path: str | None, run_id: str = "", enabled: bool = True):
        self.run_id = run_id
        self.path = path
        self._f = None
        if path and enabled:
            try:
                drop_cut_line(path)
                self._f = open(path, "a", encoding="utf-8")
            except OSError as exc:
                from ..errors import UsageError
                raise UsageError(f"{path}: cannot write metrics ({exc.strerror})") from None

    def write(self, kind: str, record: dict) -> None:
        if kind not in LINE_TYPES:
            raise ValueError(f"metrics line type {kind!r} is not in the schema")
        if self._f is not None:
            line = {"schema": SCHEMA_VERSION, "run_id": self.run_id, "type": kind, **record}
            try:
                self._f.write(json.dumps(line) + "\n")
                self._f.flush()
            except OSError as exc:       # a failed write() names no file: name the metrics
                raise OSError(exc.errno, exc.strerror or str(exc), self.path) from exc

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


def drop_cut_line(path: str) -> None:
    """A run that died mid-line left a last line without its newline: cut it off, so the
    next line appended is not glued to it and every line stays one JSON object."""
    try:
        f = open(path, "rb+")
    except FileNotFoundError:
        return
    with f:
        size = f.seek(0, 2)
        if size == 0:
            return
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        end = size
        while end > 0:                   # back to the last newline, a block at a time
            start = max(end - 65536, 0)
            f.seek(start)
            block = f.read(end - start)
            at = block.rfind(b"\n")
            if at >= 0:
                end = start + at + 1
                break
            end = start
        f.truncate(end)
    print(f"dptrain: warning: --metrics-out {path}: removed its cut last line ({size - end} "
          "bytes, from a run that died while writing it)", file=sys.stderr)


class EpochLog:
    """One epoch's numbers, folded from the step results as they complete (one or two steps
    late, step_metrics.py): the progress bar, the per-step lines of --log-every (metrics
    file and console), and the epoch's training line. ``epoch`` is 1-based."""

    def __init__(self, metrics: MetricsWriter, progress, log_every: int, epoch: int, lr: float,
                 say=None):
        self.metrics, self.progress, self.log_every, self.epoch = metrics, progress, log_every, epoch
        self.say = say
        self.t0 = time.perf_counter()
        self.seen, self.loss_sum, self.correct, self.lr = 0, 0.0, 0, lr
        self.since_step = None              # resumed mid-epoch without the epoch's sums

    def sums(self, pending=()) -> dict:
        """The epoch's running sums, with ``pending`` results not yet added, for a checkpoint
        written mid-epoch: a run resumed from it reports the whole epoch."""
        seen, loss_sum, correct = self.seen, self.loss_sum, self.correct
        for r in pending:
            seen, loss_sum, correct = seen + r.samples, loss_sum + r.loss * r.samples, correct + r.correct
        return {"samples": int(seen), "loss_sum": float(loss_sum), "correct": int(correct),
                "time_s": time.perf_counter() - self.t0}

    def resume(self, sums: dict | None, step: int) -> None:
        """Continue an epoch a checkpoint cut: from its sums, or (a checkpoint without them)
        marked as covering the steps from ``step`` on only."""
        if sums is None:
            self.since_step = step
            return
        self.seen, self.loss_sum, self.correct = sums["samples"], sums["loss_sum"], sums["correct"]
        self.t0 -= sums["time_s"]

    def exclude(self, seconds: float) -> None:
        """Leave ``seconds`` (an evaluation within the epoch) out of its training time."""
        self.t0 += seconds

    def add(self, r) -> None:
        self.seen += r.samples
        self.loss_sum += r.loss * r.samples
        self.correct += r.correct
        self.lr = r.lr
        self.progress.update(r.loss)
        if self.log_every and (r.step + 1) % self.log_every == 0:
            line = {"epoch": self.epoch, "step": r.step + 1, "loss": r.loss,
                    "accuracy": r.correct / r.samples, "lr": r.lr,
                    "time_s": time.perf_counter() - self.t0}
            self.metrics.write("step", line)
            if self.say is not None:
                self.progress.write(f"step {line['step']:>6}  epoch {self.epoch:>3}  loss "
                                    f"{r.loss:.4f}  acc {line['accuracy']:.4f}  lr {r.lr:.3g}",
                                    self.say)

    def training_line(self, epoch: int, step: int) -> dict:
        elapsed = time.perf_counter() - self.t0
        line = {"epoch": epoch, "step": step, "loss": self.loss_sum / max(self.seen, 1),
                "accuracy": self.correct / max(self.seen, 1), "lr": self.lr,
                "samples_per_s": self.seen / elapsed, "time_s": elapsed}
        if self.since_step is not None:
            line["since_step"] = self.since_step
        return line


class Progress:
    """A tqdm bar over an epoch's steps, only on an interactive terminal and when not quiet."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self._bar = None
        if self.enabled:
            try:
                import tqdm  # noqa: F401  (optional extra)
            except ImportError:
                self.enabled = False

    def start(self, total: int, desc: str) -> None:
        if self.enabled:
            from tqdm import tqdm
            self._bar = tqdm(total=total, desc=desc, leave=False, dynamic_ncols=True)

    def update(self, loss: float) -> None:
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def write(self, text: str, say) -> None:
        """A line on the console that does not break the bar."""
        if self._bar is not None:
            self._bar.write(text)
        else:
            say(text, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
