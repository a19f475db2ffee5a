"""A bench a person can watch: each measurement printed as it finishes, a progress line, and
--json-out rewritten after each one, so that a bench cut short (Ctrl-C, a scheduler's
SIGTERM, ``timeout``) keeps everything it finished.

The bench modes measure in rounds that alternate through their rows (drift on a shared
machine hits every row alike) and report medians at the end. A ``BenchStream`` is told when
one measurement starts and finishes: it prints the measurement's line on stdout at once
(flushed; not with --json, whose stdout is one object), updates the progress line on stderr
and rewrites --json-out atomically with the report built from what has finished so far
(``"complete": false`` until the end). When the bench is cut, ``watch()`` prints the summary
of the finished measurements (the table, or the one JSON object with --json) before the
interruption goes on to the command line's exit 128 + signal.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager


def write_json_atomically(path: str, report: dict) -> None:
    """Replace ``path`` in one step: a reader (or a cut) never sees half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".dptrain-bench-out-", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(report, f, indent=1)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def clock(seconds: float) -> str:
    """0:41, 12:03, 1:02:03."""
    s = int(round(seconds))
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


class Progress:
    """Which measurement of how many, the time so far and an estimate of what is left, on
    stderr: one line rewritten in place at a terminal, else one plain line per measurement
    (a log gets as many lines as the bench has measurements, no more)."""

    def __init__(self, planned: int, stream=None, now=time.monotonic):
        self.planned, self.done, self.now = planned, 0, now
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.started = now()
        self.shown = False

    def line(self, label: str) -> str:
        elapsed = self.now() - self.started
        left = (f", ~{clock(elapsed / self.done * (self.planned - self.done))} left"
                if 0 < self.done < self.planned else "")
        return (f"dptrain bench: {self.done}/{self.planned} done, {clock(elapsed)} elapsed{left}"
                + (f"; next: {label}" if label and self.done < self.planned else ""))

    def update(self, label: str = "") -> None:
        if self.planned <= 1:                      # a one-measurement bench needs no progress
            return
        if self.tty:
            self.stream.write("\r" + self.line(label) + "\x1b[K")
            self.shown = True
        elif self.done and label:                  # a log: one line as each measurement starts
            self.stream.write(self.line(label) + "\n")
        self.stream.flush()

    def clear(self) -> None:
        """Leave the terminal's line empty before a table is printed on stdout."""
        if self.tty and self.shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self.shown = False


class BenchStream:
    """One bench run's measurements as they finish. ``report()`` builds the report from what
    has finished so far (the same function gives the final report); ``table(report)`` prints
    it as the bench's table."""

    def __init__(self, args, planned: int, report, table, progress: Progress | None = None):
        self.args, self.planned = args, planned
        self.report, self.table = report, table
        self.progress = progress or Progress(planned)
        self.done = 0

    def start(self, label: str) -> None:
        self.progress.update(label)

    def finished(self, line: str | None = None) -> None:
        """One measurement is in: its line now, the progress, --json-out with it."""
        self.done += 1
        self.progress.done = self.done
        if getattr(self.args, "json_out", None):      # first: a printed line is in the file
            write_json_atomically(self.args.json_out, self._stamped(self.report(), False))
        self.progress.clear()
        if line and not self.args.json:
            print(line, flush=True)
        self.progress.update()

    def _stamped(self, report: dict, complete: bool) -> dict:
        return {**report, "complete": complete, "measurements_done": self.done,
                "measurements_planned": self.planned}

    def close(self) -> int:
        """The final report: --json-out, the JSON object or the table. Exit status 0."""
        self.progress.clear()
        report = self._stamped(self.report(), True)
        if getattr(self.args, "json_out", None):
            write_json_atomically(self.args.json_out, report)
        if self.args.json:
            print(json.dumps(report), flush=True)
        else:
            self.table(report)
            sys.stdout.flush()
        return 0

    @contextmanager
    def watch(self):
        """Cut short: print the summary of what finished, then let the interruption go on."""
        try:
            yield self
        except KeyboardInterrupt:
            self.progress.clear()
            if self.done:
                report = self._stamped(self.report(), False)
                if self.args.json:
                    print(json.dumps(report), flush=True)
                else:
                    print(f"cut after {self.done} of {self.planned} measurements; medians over "
                          "what finished:", flush=True)
                    self.table(report)
                    sys.stdout.flush()
            raise
