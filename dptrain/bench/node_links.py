"""Per-node figures of one multi-rank bench run (bench/dp_worker.py): who shares a node, the
links as dptrain's link probe measures them, and the bytes each node's interfaces moved.

Nodes are MPI's shared-memory communicators (``Split_type(COMM_TYPE_SHARED)``), the same
split the trainer uses for ``local_rank``. The intra-node link is probed inside each node
(all nodes at once), the inter-node link between the node leaders (local rank 0), and the
whole job's link over every rank (the one the planner plans with). Every rank posts the same
collectives in the same order; the leaders' communicator only exists on the leaders.

Byte counters come from /sys/class/net/*/statistics (loopback left out): what a node's
network interfaces sent and received during the timed steps. They are per node, not per
job: anything else on the node that talks during the run is counted too.
"""
from __future__ import annotations

import os
import socket

from ..comm.topology import split_node

NET_DIR = "/sys/class/net"


def read_counters(net_dir: str = NET_DIR) -> dict | None:
    """{interface: [tx_bytes, rx_bytes]} for every interface but lo; None when unreadable."""
    try:
        names = sorted(os.listdir(net_dir))
    except OSError:
        return None
    out = {}
    for name in names:
        if name == "lo":
            continue
        try:
            with open(os.path.join(net_dir, name, "statistics", "tx_bytes")) as f:
                tx = int(f.read())
            with open(os.path.join(net_dir, name, "statistics", "rx_bytes")) as f:
                rx = int(f.read())
        except (OSError, ValueError):
            continue
        out[name] = [tx, rx]
    return out


def counter_delta(before: dict | None, after: dict | None, steps: int) -> dict | None:
    """Bytes per step sent and received by each interface between two readings."""
    if before is None or after is None:
        return None
    per = {name: {"tx_bytes_per_step": (after[name][0] - tx) / max(steps, 1),
                  "rx_bytes_per_step": (after[name][1] - rx) / max(steps, 1)}
           for name, (tx, rx) in before.items() if name in after}
    return {"interfaces": per,
            "tx_bytes_per_step": sum(v["tx_bytes_per_step"] for v in per.values()),
            "rx_bytes_per_step": sum(v["rx_bytes_per_step"] for v in per.values())}


def _link(link) -> dict:
    return {"alpha_us": link.alpha * 1e6, "bandwidth_bps": 8.0 / link.beta}


class NodeLayout:
    """The node split of MPI.COMM_WORLD: this rank's node communicator, the leaders'
    communicator (None off the leaders), and every rank's host and node index."""

    def __init__(self, mpi_comm=None):
        from mpi4py import MPI
        self.MPI = MPI
        self.world = mpi_comm if mpi_comm is not None else MPI.COMM_WORLD
        rank = self.world.Get_rank()
        self.node = split_node(MPI, self.world)       # as the trainer's reduction sees nodes
        self.is_leader = self.node.Get_rank() == 0
        leaders = self.world.Split(0 if self.is_leader else MPI.UNDEFINED, key=rank)
        self.leaders = None if leaders == MPI.COMM_NULL else leaders
        # a node's index is its leader's position among the leaders (leaders split by world rank)
        mine = self.leaders.Get_rank() if self.leaders is not None else -1
        node_index = self.node.bcast(mine, root=0)
        self.hosts = self.world.allgather(socket.gethostname())
        self.node_of_rank = self.world.allgather(node_index)
        self.nodes = max(self.node_of_rank) + 1

    def probe(self) -> dict:
        """The links: 'job' over all ranks, 'intra' per node (nodes of one rank: None),
        'inter' between the leaders (one node: None). Every rank calls this."""
        from ..comm.link_probe import measure_link
        from ..comm.mpi import MPICommunicator
        job = _link(measure_link(MPICommunicator(self.world))) if self.world.Get_size() > 1 else None
        intra = None
        if self.node.Get_size() > 1:
            intra = _link(measure_link(MPICommunicator(self.node)))
        inter = None
        if self.leaders is not None and self.leaders.Get_size() > 1:
            inter = _link(measure_link(MPICommunicator(self.leaders)))
        self.world.Barrier()
        return {"job": job, "intra": intra, "inter": inter}

    def report(self, links: dict, before, after, steps: int) -> dict | None:
        """Rank 0's per-node report (None on the other ranks). Every rank calls this."""
        mine = None
        if self.is_leader:
            mine = {"host": socket.gethostname(), "intra_link": links["intra"],
                    "net": counter_delta(before, after, steps)}
        every = self.world.gather(mine, root=0)
        if self.world.Get_rank() != 0:
            return None
        per_node = [n for n in every if n is not None]
        for i, n in enumerate(per_node):
            n["node"] = i
            n["ranks"] = [r for r, k in enumerate(self.node_of_rank) if k == i]
        return {"nodes": self.nodes, "hosts": self.hosts, "node_of_rank": self.node_of_rank,
                "job_link": links["job"], "inter_node_link": links["inter"], "per_node": per_node}

    def free(self) -> None:
        if self.leaders is not None:
            self.leaders.Free()
        self.node.Free()
