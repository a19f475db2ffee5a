"""What a bed made, on disk, so that exactly that is removed: by the bed itself, by the CLI's
`down`, or by the next bed when the owner was killed (SIGKILL leaves no chance to clean up).

Each bed has `/run/dptrain-netbed/<id>.json` (override with DPTRAIN_NETBED_RUN): its owner's
pid and start time, its subnet, and every namespace, /etc/netns entry and delayer process,
written down BEFORE it is made so that a bed interrupted half-way is still removed whole.
A lock file serialises the choice of subnets and the reaping between concurrent beds."""
import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

RUN_DIR = Path(os.environ.get("DPTRAIN_NETBED_RUN", "/run/dptrain-netbed"))
ETC_NETNS = Path("/etc/netns")
CREATED_ETC_NETNS = "created-etc-netns"   # marker: /etc/netns was made by a bed
KEPT = {"pid": None, "start": None}        # owner of a bed kept up until `netbed.py down`


def process_start(pid):
    """The process's start time in clock ticks (field 22 of /proc/PID/stat), or None when it
    is gone: with the pid it names one process, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


_held = []   # reentrant within the process: a SIGTERM may arrive while the lock is held


@contextlib.contextmanager
def locked():
    if _held:
        yield
        return
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    with open(RUN_DIR / "lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        _held.append(f)
        try:
            yield
        finally:
            _held.clear()
            fcntl.flock(f, fcntl.LOCK_UN)


def make_etc_netns():
    """/etc/netns, made (and marked as a bed's, for the last teardown to remove) when missing.
    Under the lock: two beds built at once (two test workers) both found it missing, and the
    second mkdir failed."""
    with locked():
        if not ETC_NETNS.exists():
            ETC_NETNS.mkdir()
            (RUN_DIR / CREATED_ETC_NETNS).touch()


class BedState:
    """The record of one bed; `save()` after every addition."""

    def __init__(self, bed_id, subnet, owner=None, **fields):
        self.id, self.subnet = bed_id, subnet
        self.owner = dict(owner) if owner else {"pid": os.getpid(), "start": process_start(os.getpid())}
        self.namespaces = fields.get("namespaces", [])
        self.etc_netns = fields.get("etc_netns", [])
        self.delayers = fields.get("delayers", {})   # node namespace -> {"pid", "start"}
        self.nodes = fields.get("nodes", [])         # node namespaces, in order
        self.head = fields.get("head")

    @property
    def path(self):
        return RUN_DIR / f"{self.id}.json"

    @property
    def work_dir(self):
        """Per-bed files: hostfile, host map, launcher, delayer logs."""
        return RUN_DIR / self.id

    def save(self):
        data = {k: getattr(self, k) for k in
                ("id", "subnet", "owner", "namespaces", "etc_netns", "delayers", "nodes", "head")}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.rename(self.path)

    @classmethod
    def load(cls, path):
        data = json.loads(Path(path).read_text())
        return cls(data.pop("id"), data.pop("subnet"), **data)

    def owner_alive(self):
        if self.owner == KEPT:
            return True
        return process_start(self.owner["pid"]) == self.owner["start"]


def all_states():
    states = []
    for path in sorted(RUN_DIR.glob("*.json")):
        try:
            states.append(BedState.load(path))
        except (OSError, ValueError, KeyError):
            continue          # being written, or not ours: left alone
    return states


def kill_recorded(proc):
    """SIGTERM a process we started, only if it is still that process (pid and start time)."""
    if proc and process_start(proc["pid"]) == proc["start"]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc["pid"], signal.SIGTERM)


def namespace_pids(ns):
    out = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()] if out.returncode == 0 else []


def kill_namespace_processes(namespaces, grace=2.0):
    """Whatever still runs in the bed's namespaces (ranks of a hung job, proxies, delayers)
    gets SIGTERM, then SIGKILL after `grace` seconds: a namespace with processes in it
    outlives `ip netns del`, and so would its veths."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = [p for ns in namespaces for p in namespace_pids(ns)]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = [p for p in pids if process_start(p) is not None]
            time.sleep(0.05)
        if not pids:
            return


def existing_namespaces():
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def teardown(state):
    """Removes exactly what `state` records; safe to run twice or on a half-made bed."""
    for proc in state.delayers.values():
        kill_recorded(proc)
    present = [ns for ns in state.namespaces if ns in existing_namespaces()]
    kill_namespace_processes(present)
    for ns in present:        # deleting a namespace takes its veths, bridge and qdiscs along
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    for ns in state.etc_netns:
        shutil.rmtree(ETC_NETNS / ns, ignore_errors=True)
    shutil.rmtree(state.work_dir, ignore_errors=True)
    state.path.unlink(missing_ok=True)
    if not all_states() and (RUN_DIR / CREATED_ETC_NETNS).exists():
        with contextlib.suppress(OSError):
            ETC_NETNS.rmdir()           # only when empty: another tool's entries stay
        (RUN_DIR / CREATED_ETC_NETNS).unlink(missing_ok=True)


def reap_stale():
    """Removes the beds whose owner process is gone (a test killed with SIGKILL). Call with
    the lock held. Returns the ids removed."""
    reaped = []
    for state in all_states():
        if not state.owner_alive():
            teardown(state)
            reaped.append(state.id)
    return reaped
