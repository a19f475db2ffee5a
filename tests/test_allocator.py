"""allocator.keep_freed_memory: a freed large block stays in the process (no fresh pages to
fault in at the next step's allocation), in a fresh interpreter each way."""
import subprocess
import sys

import pytest

SCRIPT = """
import sys
import numpy as np
from dptrain.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
def resident_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
a = np.ones(24 << 20, dtype=np.uint8)        # 24 MiB, touched
before = resident_mb()
del a
print(before - resident_mb())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and glibc")
def test_a_freed_block_stays_resident_only_when_kept():
    def released(mode):
        out = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True,
                             text=True, timeout=60, check=True)
        return float(out.stdout)
    assert released("default") > 20          # glibc gives a 24 MiB block back at once
    assert released("keep") < 1


def test_it_starts_no_process():
    """It runs after MPI has started: a fork there (ctypes.util.find_library runs ldconfig) is
    unsafe with registered memory and leaves a copy of the rank a signal can hit instead."""
    script = """
import os, subprocess
def refuse(*args, **kwargs):
    raise AssertionError("a process was started")
subprocess.Popen.__init__ = refuse
os.fork = os.posix_spawn = os.posix_spawnp = refuse
from dptrain.allocator import keep_freed_memory
assert keep_freed_memory()
"""
    subprocess.run([sys.executable, "-c", script], timeout=60, check=True)
