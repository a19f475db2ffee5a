"""Run across the bed by the tests: one Allreduce of NBYTES (argv[1]) of float64, timed after a
barrier, and rank 0 prints every rank's figures: the tests check (the sum, the node's name, how
many ranks MPI says share this node)."""
import json
import sys
import time

import numpy as np
from mpi4py import MPI

comm = MPI.COMM_WORLD
nbytes = int(sys.argv[1]) if len(sys.argv) > 1 else 1 << 20
send = np.full(nbytes // 8, comm.rank + 1, dtype=np.float64)
recv = np.empty_like(send)
comm.Barrier()
start = time.perf_counter()
comm.Allreduce(send, recv, op=MPI.SUM)
elapsed = time.perf_counter() - start
node = comm.Split_type(MPI.COMM_TYPE_SHARED)
expected = comm.size * (comm.size + 1) / 2
mine = {"rank": comm.rank, "size": comm.size, "host": MPI.Get_processor_name(),
        "shared_size": node.size, "elapsed": elapsed, "sum_ok": bool(np.all(recv == expected))}
everyone = comm.gather(mine)            # one line from rank 0: ranks' prints would interleave
if comm.rank == 0:
    print("RESULT " + json.dumps(everyone), flush=True)
