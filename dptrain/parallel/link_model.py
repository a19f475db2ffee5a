"""One rank's link in the step simulator: first in, first out, or in order of need.

``fifo`` (the poll and thread engines): operations complete in posting order, each as a whole.
``priority`` (parallel/priority.py): each operation is cut into chunks; when the link is free
the next chunk of the most urgent operation (lowest layer index, then posting order) goes,
chosen among the operations every rank had posted when the previous chunk started (the
agreement rides in the chunks, so a post is seen one chunk late); with nothing agreed left,
a separate agreement of ``agree_s`` starts once something new is posted. Chunks that carry the
agreement are ``slot_bytes`` longer.

The simulator posts operations as its clock reaches them and asks for an operation's end
only when its clock must wait for it; the main thread posts nothing while it waits, so the
link can be replayed up to that end without missing a post that could have preempted.
"""
from __future__ import annotations


class _Op:
    __slots__ = ("post", "priority", "seq", "chunks", "agrees", "end")

    def __init__(self, post, priority, seq, chunks, agrees):
        self.post, self.priority, self.seq, self.chunks = post, priority, seq, chunks
        self.agrees, self.end = agrees, None


class SimLink:
    def __init__(self, priority: bool = False, agree_s: float = 0.0):
        self.priority, self.agree_s = priority, agree_s
        self.free = 0.0                 # when the link finishes what it has started
        self.agreed = -float("inf")     # operations posted up to this time are agreed
        self._ops: list[_Op] = []       # posted, not finished
        self._posted = 0

    def post(self, t: float, priority: int, chunk_costs: list[float], agrees: bool = True) -> _Op:
        """An operation posted at ``t``: its chunks' costs (one chunk: sent whole); ``agrees``:
        its chunks carry the agreement (a gather's do not)."""
        op = _Op(t, priority, self._posted, list(chunk_costs), agrees)
        self._posted += 1
        if not self.priority:                       # FIFO: its end is known at once
            self.free = max(self.free, t) + sum(op.chunks)
            op.end = self.free
            return op
        self._ops.append(op)
        return op

    def end(self, op: _Op) -> float:
        """When ``op`` completes (replaying the link up to then)."""
        while op.end is None:
            self._next()
        return op.end

    def _next(self) -> None:
        ready = [o for o in self._ops if o.post <= self.agreed]
        if not ready:                               # a separate agreement, once one is posted
            self.free = max(self.free, min(o.post for o in self._ops))
            self.agreed = self.free
            self.free += self.agree_s
            return
        op = min(ready, key=lambda o: (o.priority, o.seq))
        if op.agrees:
            self.agreed = self.free                 # what this chunk's slots carry
        self.free += op.chunks.pop(0)
        if not op.chunks:
            op.end = self.free
            self._ops.remove(op)
