"""Run the dptrain command line and, at exit, write this process's peak resident set.

    mpiexec -n 2 python scripts/rss_probe.py OUT_DIR train --dataset npy:DIR ...

Each rank writes OUT_DIR/rank<R>.json: {"rank", "vm_hwm_kib" (/proc/self/status VmHWM:
the peak resident set, anonymous and file-backed pages alike), "ru_maxrss_kib", "rc"}.
"""
from __future__ import annotations

import json
import os
import resource
import sys


def peak_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return -1


def main() -> int:
    out, argv = sys.argv[1], sys.argv[2:]
    from dptrain.cli import main as dptrain_main
    from dptrain.launch_env import launch_rank
    rc = dptrain_main(argv)
    rank = launch_rank()
    record = {"rank": rank, "vm_hwm_kib": peak_kib(), "rc": rc,
              "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)
    return rc


if __name__ == "__main__":
    sys.exit(main())
