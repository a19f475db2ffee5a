"""Run across the bed by tests/netbed/test_hierarchical_bed.py: REPEATS Allreduces of NBYTES
(argv[1]) of float32 through dptrain's communicator with --reduction MODE (argv[2]); rank 0
prints whether every rank got the sum and which ranks share a node."""
import json
import sys

import numpy as np

from dptrain.comm import hierarchical
from dptrain.comm.mpi import MPICommunicator

nbytes, mode = int(sys.argv[1]), sys.argv[2]
REPEATS = 3
comm, layout = hierarchical.over(MPICommunicator(), mode)
buf = np.empty(nbytes // 4, dtype=np.float32)
ok = True
for k in range(REPEATS):
    buf[:] = comm.rank + k
    comm.allreduce(buf)
    ok &= bool(np.all(buf == sum(range(comm.size)) + comm.size * k))
mine = {"rank": comm.rank, "ok": ok, "node": layout.node_of[comm.rank],
        "hierarchical": isinstance(comm, hierarchical.HierarchicalCommunicator)}
every = comm.allreduce_obj([mine])          # a list of every rank's, in rank order
if comm.rank == 0:
    print("RESULT " + json.dumps({"ranks": every, "repeats": REPEATS}), flush=True)
