"""Whether a lock's owner is alive: a process that has exited but was not yet collected by its
parent (a zombie, as a rank ended by MPI_Abort can be for a while) no longer owns anything."""
import socket
import subprocess
import sys
import time

from dptrain.train import lock


def test_a_zombie_owner_is_gone_a_live_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        owner = {"pid": child.pid, "host": socket.gethostname(), "start": lock._start_time(child.pid)}
        assert lock.owner_alive(owner)
        child.kill()
        deadline = time.time() + 10                 # not waited for: a zombie until .wait()
        while not lock._ended(child.pid) and time.time() < deadline:
            time.sleep(0.05)
        assert lock._ended(child.pid)
        assert not lock.owner_alive(owner)
    finally:
        child.wait()
