"""Metrics JSONL (one object per line, rank 0 only) and the progress bar."""
from __future__ import annotations

import json
import sys


class MetricsWriter:
    def __init__(self, path: str | None, enabled: bool = True):
        self._f = None
        if path and enabled:
            try:
                self._f = open(path, "a", encoding="utf-8")
            except OSError as exc:
                from ..errors import UsageError
                raise UsageError(f"{path}: cannot write metrics ({exc.strerror})") from None

    def write(self, record: dict) -> None:
        if self._f is not None:
            self._f.write(json.dumps(record) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


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

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
