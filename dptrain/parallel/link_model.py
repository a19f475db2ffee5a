"""One rank's link in the step simulator: first in, first out, or in order of need.

``fifo`` (the poll and thread engines): operations complete in posting order, each as a whole.
``priority`` (parallel/priority.py): each operation is cut into chunks, and chunk n is chosen
when chunk n - DEPTH ends: the next chunk of the most urgent operation (lowest layer index,
then posting order) among those every rank had posted when chunk n - DEPTH was posted (its
slots carried the counts then); if none, the next chunk of the oldest operation with chunks
left, once it is posted. The link sends one chunk at a time. Gathers carry no counts.

The simulator posts operations as its clock reaches them and asks for an operation's end
only when its clock must wait for it; the main thread posts nothing while it waits, so the
link can be replayed up to that end without missing a post that could have changed a choice.
"""
from __future__ import annotations

from .priority import DEPTH

NEVER = -float("inf")


class _Op:
    __slots__ = ("post", "priority", "seq", "chunks", "agrees", "end")

    def __init__(self, post, priority, seq, chunks, agrees):
        self.post, self.priority, self.seq, self.chunks = post, priority, seq, chunks
        self.agrees, self.end = agrees, None


class _Collective:
    """One decided collective: when it was posted and ended, and the post time up to which
    operations are agreed once it has completed."""
    __slots__ = ("post", "end", "agreed")

    def __init__(self, post, end, agreed):
        self.post, self.end, self.agreed = post, end, agreed


class SimLink:
    def __init__(self, priority: bool = False, depth: int = DEPTH):
        self.priority, self.depth = priority, depth
        self.free = 0.0                 # FIFO: when the link finishes what it has been given
        self._ops: list[_Op] = []       # priority: posted, chunks left to decide
        self._sent: list[_Collective] = []
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

    def _urgent(self, agreed: float):
        ready = [o for o in self._ops if o.post <= agreed]
        return min(ready, key=lambda o: (o.priority, o.seq)) if ready else None

    def _next(self) -> None:
        sent = self._sent
        last = sent[-1] if sent else _Collective(0.0, 0.0, NEVER)
        ahead = sent[-self.depth] if len(sent) >= self.depth else _Collective(0.0, 0.0, NEVER)
        op = self._urgent(ahead.agreed) or min(self._ops, key=lambda o: o.seq)
        t = max(ahead.end, op.post)                 # chosen, counts read, posted
        end = max(t, last.end) + op.chunks.pop(0)
        # posting it, every rank had posted it and (FIFO or agreed) every one before it
        sent.append(_Collective(t, end, max(last.agreed, t if op.agrees else NEVER, op.post)))
        if not op.chunks:
            op.end = end
            self._ops.remove(op)
