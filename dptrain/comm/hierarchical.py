"""A topology-aware Allreduce: within each node, across the nodes per shard, within the node.

For a bucket of n elements on N nodes of L ranks (ChainerMN's two-dimensional and Horovod's
hierarchical allreduce):

    1  allreduce over the node          (shared memory: every rank of the node holds the node sum)
    2  allreduce of this rank's 1/L shard over the ranks of the same position on every node
    3  allgather of the shards over the node

so each node's link carries every byte 2 (N-1)/N times, once per node rather than once per
rank (a flat ring over N L ranks carries 2 (NL-1)/(NL) of it through every rank). Which
buckets go this way is the ``ReductionChoice``'s (comm/reduction_choice.py), the same on every
rank. Results equal the flat sum up to summation order, and every rank ends with the same
bits (stage 3 copies the one result of each shard).

Each stage has its own communicator (channel). Stage 1 is posted when the bucket is handed
over (call order); stages 2 and 3 in one sequence, the same on every rank: a bucket's stage 2
only once the bucket before it has posted its stage 3. Each channel thus sees its collectives
in the same order on every rank, and so does the sequence across channels, which matters
where a post blocks (--check-collectives strict compares each post with a collective: with
posts ordered by completion, ranks of a cyclic layout waited on each other in a circle).
The cross-node stages of two buckets never run at once; they would share one link anyway.
Stages 2 and 3 are posted by a driver thread of this communicator, never by the caller's test() or wait(): a rank blocked in
some other collective (the step's metrics, a flat bucket) would otherwise never post its next
stage, and the peers waiting on that stage would never join the other collective (deadlock,
seen with --sync overlap under polling). The driver tests its requests and sleeps a little
between rounds rather than spinning in MPI_Wait, which would take a core from the computation.
"""
from __future__ import annotations

import threading
import time

import numpy as np

from .base import Communicator, Handle
from .emulated import AlphaBeta
from .order_check import current_origin, labelled
from .reduction_choice import ReductionChoice

DONE = 4
IDLE_SLEEP_S = (20e-6, 1e-3)        # the driver's pause between rounds: first, and longest


class _Op:
    """One bucket's hierarchical Allreduce: the stage in flight (1-3, DONE) and its request."""

    def __init__(self, buf, node_rank: int, node_size: int):
        self.buf, self.stage, self.req, self.error = buf, 0, None, None
        shard = -(-buf.size // node_size)
        self.lo = min(node_rank * shard, buf.size)
        self.hi = min(self.lo + shard, buf.size)
        self.piece = np.zeros(shard, dtype=buf.dtype)
        self.gathered = np.empty((node_size, shard), dtype=buf.dtype)
        self.finished = threading.Event()
        self.origin = current_origin() or "unlabelled"     # for the driver's order records


class _HierarchicalHandle(Handle):
    def __init__(self, op: _Op):
        self.op = op

    def test(self) -> bool:
        if self.op.finished.is_set():
            self._raise()
            return True
        return False

    def wait(self) -> None:
        self.op.finished.wait()
        self._raise()

    def _raise(self) -> None:
        if self.op.error is not None:
            raise self.op.error


class HierarchicalCommunicator(Communicator):
    """``flat`` for everything, with the Allreduces the choice picks carried over ``node``
    (stage 1), ``cross`` (stage 2) and ``gather`` (stage 3, a duplicate of the node's)."""

    def __init__(self, flat: Communicator, node: Communicator, cross: Communicator,
                 gather: Communicator, layout, choice: ReductionChoice):
        self.flat, self.node, self.cross, self.gather = flat, node, cross, gather
        self.layout, self.choice = layout, choice
        self.name = flat.name
        self.rank, self.size = flat.rank, flat.size
        self.local_rank, self.local_size = node.rank, node.size
        self._queue: list[_Op] = []
        self._cv = threading.Condition()      # the queue (held only to read or change it)
        self._posting = threading.Lock()      # stage-1 posts and their place in the queue
        self._driver: threading.Thread | None = None
        self._failed: BaseException | None = None    # what ended the driver, if anything

    # --- the hierarchical reduction -------------------------------------------------------
    def iallreduce(self, buf) -> Handle:
        if not self.choice.hierarchical(int(buf.nbytes)):
            return self.flat.iallreduce(buf)
        return self.iallreduce_hierarchical(buf)

    def iallreduce_hierarchical(self, buf) -> Handle:
        """The three stages, whatever the choice (the probe times them)."""
        if self._failed is not None:                # the driver is gone: fail, never wait
            raise self._failed
        op = _Op(buf, self.node.rank, self.node.size)
        # The post may block (a strict order check is a collective): never under the lock
        # the driver takes, or a peer waiting on this rank's next stage would wait forever.
        with self._posting:
            op.req, op.stage = self.node.iallreduce(buf), 1        # in call order
            with self._cv:
                self._queue.append(op)
                if self._driver is None:
                    self._driver = threading.Thread(target=self._drive, daemon=True,
                                                    name="dptrain-hierarchical")
                    self._driver.start()
                self._cv.notify()
        return _HierarchicalHandle(op)

    def allreduce(self, buf) -> None:
        if self.choice.hierarchical(int(buf.nbytes)):
            self.iallreduce_hierarchical(buf).wait()
        else:
            self.flat.allreduce(buf)

    def _start(self, op: _Op, stage: int) -> None:
        op.stage = stage
        if stage == 2:
            with labelled(op.origin):
                op.req = self.cross.iallreduce(op.buf[op.lo:op.hi])
        elif stage == 3:
            op.piece[:op.hi - op.lo] = op.buf[op.lo:op.hi]
            with labelled(op.origin):
                op.req = self.gather.iallgather(op.piece, op.gathered)
        else:
            op.buf[...] = op.gathered.reshape(-1)[:op.buf.size]
            op.req = None
            op.finished.set()

    def _advance(self, queue: list[_Op]) -> bool:
        """Move every bucket as far as completed requests and the posting order allow;
        whether anything moved. Never blocks."""
        moved = False
        before = DONE                              # the stage the previous bucket is at
        for op in queue:
            while op.stage < DONE:
                nxt = op.stage + 1
                if nxt < DONE and before < 3:      # the previous bucket is not at stage 3 yet
                    break
                if not op.req.test():
                    break
                self._start(op, nxt)
                moved = True
            before = op.stage
        return moved

    def _drive(self) -> None:
        pause = IDLE_SLEEP_S[0]
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                queue = list(self._queue)
            try:
                moved = self._advance(queue)
            except Exception as exc:               # noqa: BLE001 - the waiters re-raise it
                with self._cv:
                    self._failed = exc
                    for op in self._queue:
                        op.error = exc
                        op.finished.set()
                    self._queue.clear()
                return
            with self._cv:
                while self._queue and self._queue[0].stage == DONE:
                    self._queue.pop(0)
            pause = IDLE_SLEEP_S[0] if moved else min(pause * 2, IDLE_SLEEP_S[1])
            if not moved:
                time.sleep(pause)

    # --- everything else is the flat communicator's ---------------------------------------
    def allgather(self, arr):
        return self.flat.allgather(arr)

    def iallgather(self, arr, out) -> Handle:
        return self.flat.iallgather(arr, out)

    def bcast(self, buf, root: int = 0) -> None:
        self.flat.bcast(buf, root)

    def barrier(self) -> None:
        self.flat.barrier()

    def allreduce_obj(self, obj):
        return self.flat.allreduce_obj(obj)

    def bcast_obj(self, obj, root: int = 0):
        return self.flat.bcast_obj(obj, root)

    def dup(self) -> "HierarchicalCommunicator":
        return HierarchicalCommunicator(self.flat.dup(), self.node.dup(), self.cross.dup(),
                                    self.gather.dup(), self.layout, self.choice)


def over(flat: Communicator, mode: str = "auto", wrap=lambda c: c):
    """``flat`` (over MPI) with hierarchical Allreduces where the ranks' layout allows one,
    and the layout (topology.Layout). ``wrap`` is applied to each node and cross communicator
    (the collective-order check). Every rank calls this at once."""
    from .mpi import MPICommunicator
    from .topology import discover
    layout, node, cross = discover(flat.MPI, flat.comm)
    if cross is None or mode == "flat":
        node.Free()
        if cross is not None:
            cross.Free()
        return flat, layout
    parts = [wrap(MPICommunicator(c)) for c in (node, cross, node.Dup())]
    return HierarchicalCommunicator(flat, *parts, layout, ReductionChoice(mode, flat.size)), layout


class _Hierarchical:
    """Allreduce through the three stages always: what ``measure`` times."""

    def __init__(self, comm: HierarchicalCommunicator):
        self.comm = comm

    def allreduce(self, buf) -> None:
        self.comm.iallreduce_hierarchical(buf).wait()


def measure(comm, flat_link: AlphaBeta, xp=np, timer=None) -> ReductionChoice | None:
    """Time hierarchical Allreduces at the probe's sizes and give the choice both lines
    (``flat_link``: the probe's line of the flat Allreduce), plus the node and cross links
    for the report. Every rank calls this; None when ``comm`` has no choice to make."""
    from . import link_probe
    inner = _hierarchical(comm)
    if inner is None or inner.choice.mode != "auto":
        return None if inner is None else inner.choice
    choice = inner.choice
    time_it = timer or (lambda c: link_probe.time_allreduces(c, xp))
    choice.hier = link_probe.measure_link(comm, xp, timer=lambda c: time_it(_Hierarchical(inner)))
    choice.intra = link_probe.measure_link(inner.node, xp, timer=timer)
    choice.inter = link_probe.measure_link(inner.cross, xp, timer=timer)
    choice.flat = flat_link
    return choice


def choice_of(comm) -> ReductionChoice | None:
    """The reduction choice under ``comm`` (through order-check wrappers), if hierarchical."""
    inner = _hierarchical(comm)
    return inner.choice if inner is not None else None


def _hierarchical(comm) -> HierarchicalCommunicator | None:
    while comm is not None and not isinstance(comm, HierarchicalCommunicator):
        comm = getattr(comm, "inner", None)
    return comm
