"""Which ranks share a node, and the communicators a two-level reduction needs.

MPI knows which ranks share a node (``MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)``: the
launcher tells each process which host it is on). The layout is agreed by every rank
through one allgather, so every rank takes the same decision:

    node      the ranks of this rank's node (reduce among themselves first, shared memory)
    cross     one rank per node, those with this rank's position on its node: each carries a
              1/L shard of every bucket across the nodes (L ranks per node)

A two-level reduction needs every node to hold the same number of ranks (each position's
cross communicator must reach every node); other layouts stay flat, and the reason is kept
for the run's first line.

``DPTRAIN_TEST_RANKS_PER_NODE=k`` (tests only) takes ranks r with equal r // k for one node
(``cyclic:N``: equal r % N, ranks dealt to N nodes in turn, as Slurm's cyclic distribution
does), so the hierarchical code runs on one host under the MPI tests; the bytes then cross
shared memory, not a network.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

TEST_ENV = "DPTRAIN_TEST_RANKS_PER_NODE"


def split_node(MPI, mpi_comm):
    """The communicator of the ranks on this rank's node (a collective over ``mpi_comm``)."""
    rank = mpi_comm.Get_rank()
    per_node = os.environ.get(TEST_ENV, "").strip()
    if per_node.startswith("cyclic:"):              # ranks dealt to N nodes in turn
        return mpi_comm.Split(color=rank % max(int(per_node[7:]), 1), key=rank)
    if per_node:
        return mpi_comm.Split(color=rank // max(int(per_node), 1), key=rank)
    return mpi_comm.Split_type(MPI.COMM_TYPE_SHARED, key=rank)


@dataclass(frozen=True)
class Layout:
    nodes: int                      # number of nodes
    per_node: tuple[int, ...]       # ranks on each node, nodes ordered by their lowest rank
    node_of: tuple[int, ...]        # node index of each rank

    @property
    def uniform(self) -> bool:
        return len(set(self.per_node)) == 1

    @property
    def two_level(self) -> bool:
        """Whether a hierarchical reduction (within nodes, then across) applies."""
        return self.nodes > 1 and self.uniform and self.per_node[0] > 1

    def why_flat(self) -> str:
        if self.nodes == 1:
            return "one node"
        if not self.uniform:
            return f"nodes hold unequal rank counts {list(self.per_node)}"
        if self.per_node[0] == 1:
            return "one rank per node"
        return ""

    def describe(self) -> str:
        if self.uniform:
            return f"{self.nodes} node{'s' * (self.nodes > 1)} x {self.per_node[0]} rank{'s' * (self.per_node[0] > 1)}"
        return f"{self.nodes} nodes with {'/'.join(map(str, self.per_node))} ranks"


def discover(MPI, mpi_comm):
    """(layout, node communicator, cross communicator or None); every rank calls this.
    The cross communicator exists only where the layout is two-level."""
    node = split_node(MPI, mpi_comm)
    rank, size = mpi_comm.Get_rank(), mpi_comm.Get_size()
    leader = np.empty(1, dtype=np.int64)       # buffer collectives: no interpreter lock held
    node.Allreduce(np.array([rank], dtype=np.int64), leader, op=MPI.MIN)
    leaders = np.empty(size, dtype=np.int64)
    mpi_comm.Allgather(leader, leaders)
    order = sorted(set(int(x) for x in leaders))
    node_of = tuple(order.index(int(x)) for x in leaders)
    layout = Layout(len(order), tuple(node_of.count(i) for i in range(len(order))), node_of)
    cross = None
    if layout.two_level:
        cross = mpi_comm.Split(color=node.Get_rank(), key=node_of[rank])
    return layout, node, cross
