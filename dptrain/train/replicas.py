"""--check-replicas: every rank must hold the same parameters; a hash of them is compared."""
from __future__ import annotations

import hashlib

import numpy as np

from .. import backend
from ..errors import TrainingFailure


def check_replicas(model, comm, step: int, guard) -> None:
    """Raises TrainingFailure on every rank alike (the hashes are all-gathered) if any
    rank's parameters differ from rank 0's. Pending updates must be flushed first."""
    h = hashlib.blake2b(digest_size=8)
    for _, p in model.named_params():
        h.update(backend.to_numpy(p).tobytes())
    digest = np.frombuffer(h.digest(), dtype=np.uint64)
    with guard(f"allgather of parameter hashes at step {step}", "check"):
        all_digests = comm.allgather(digest)[:, 0]
    if not np.all(all_digests == all_digests[0]):
        bad = [r for r, d in enumerate(all_digests) if d != all_digests[0]]
        raise TrainingFailure(f"replicas diverged at step {step}: ranks {bad} differ "
                              "from rank 0 (--check-replicas)")
