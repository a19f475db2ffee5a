"""Timeline of a training run as Chrome trace events (chrome://tracing, Perfetto).

One process per rank (pid = rank) with three lanes: tid 0 is computation on the main thread
(forward and backward per layer, deferred updates, time spent waiting for communication),
tid 1 is communication (each bucket's reduction from post to completion, with its bytes),
tid 2 marks the training steps.
Times are microseconds from a common start: the ranks pass a barrier, then read their
clocks. Rank 0 gathers every rank's events and writes one file.
"""
from __future__ import annotations

import json
import os
import time

COMPUTE, COMM, STEPS = 0, 1, 2


class Tracer:
    def __init__(self, rank: int, first_step: int = 1, steps: int = 10):
        self.rank = rank
        self.first_step, self.last_step = first_step, first_step + steps - 1
        self.step = 0
        self.events: list[dict] = []
        self.t0 = time.perf_counter()

    def start_clock(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def active(self) -> bool:
        return self.first_step <= self.step <= self.last_step

    def span(self, name: str, cat: str, start: float, end: float, lane: int = COMPUTE,
             step: int | None = None, **args) -> None:
        """Record [start, end] (perf_counter seconds); ``step`` defaults to the current one."""
        step = self.step if step is None else step
        if not self.first_step <= step <= self.last_step:
            return
        self.events.append({"name": name, "cat": cat, "ph": "X", "pid": self.rank, "tid": lane,
                            "ts": (start - self.t0) * 1e6, "dur": max(end - start, 0.0) * 1e6,
                            "args": dict(args, step=step)})

    def metadata(self) -> list[dict]:
        names = [{"name": "process_name", "ph": "M", "pid": self.rank, "args": {"name": f"rank {self.rank}"}}]
        for tid, label in ((COMPUTE, "compute"), (COMM, "communication"), (STEPS, "steps")):
            names.append({"name": "thread_name", "ph": "M", "pid": self.rank, "tid": tid,
                          "args": {"name": label}})
        return names

    def write_merged(self, comm, path: str) -> None:
        """Every rank calls this; rank 0 writes the file holding all ranks' events."""
        merged = comm.allreduce_obj(self.metadata() + self.events)
        if comm.rank == 0:
            write_atomically(path, {"traceEvents": merged, "displayTimeUnit": "ms"})


def write_atomically(path: str, doc) -> None:
    """Whole or not at all: a temporary file renamed over ``path``, so a reader (or a run
    killed meanwhile) never sees half a JSON document; errors name ``path``."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OSError(exc.errno, exc.strerror or str(exc), path) from exc


def reduction(tracer, b, posted: float, completed: float, waited_from: float, waited_to: float,
              step: int | None = None) -> None:
    """A bucket's reduction on the communication lane (post to completion, with its bytes;
    ``step``: the one that posted it, default the current one) and the main thread's wait
    for it on the compute lane (in the current step). ``tracer``: a Tracer, or what stands
    for one (autotune.LayerClock)."""
    tracer.span(f"allreduce bucket {b.index}", "comm", posted, completed, lane=COMM, step=step,
                bucket=b.index, bytes=int(b.wire.nbytes), layers=b.layers,
                posted_us=(posted - tracer.t0) * 1e6, completed_us=(completed - tracer.t0) * 1e6)
    tracer.span(f"wait bucket {b.index}", "wait", waited_from, waited_to, bucket=b.index)


def load(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    return doc["traceEvents"] if isinstance(doc, dict) else doc
