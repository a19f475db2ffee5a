"""NetBed: N network namespaces ("nodes") on one machine, each with a veth `eth0` to a bridge
in a head namespace where mpiexec runs. Ranks on different nodes talk through real kernel TCP
over the veths, so bytes can be counted on eth0 and the links shaped, cut and restored.

    with NetBed(nodes=2, bw="100mbit") as bed:
        bed.run(bed.mpiexec_argv(n=4, ppn=2) + [python, "script.py"], timeout=60)

Everything lives inside the bed's own namespaces (names and a /24 unique to the bed), plus its
state file and work dir under /run/dptrain-netbed and its /etc/netns/<ns>/hosts entries; all of
it is removed on exit, at interpreter exit, on SIGTERM, or by the next bed when the owner was
killed. Needs root, iproute2, util-linux's unshare; iptables for loss and delay."""
import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import guard, shaping, state as st

HERE = Path(__file__).resolve().parent
VENV_BIN = Path(sys.executable).parent
# The PyPI MPICH's default netmod (UCX) sees every namespace as one host and moves the bytes
# through shared memory, 0 of them on eth0; these keep it (and ofi) on the node's eth0.
LINK_ENV = {"UCX_TLS": "tcp,self", "UCX_NET_DEVICES": "eth0", "FI_TCP_IFACE": "eth0"}
_serial = itertools.count()


class NetBedError(RuntimeError):
    pass


def ip(*argv):
    out = subprocess.run(["ip", *argv], capture_output=True, text=True)
    if out.returncode != 0:
        raise NetBedError(f"ip {' '.join(argv)}: {out.stderr.strip()}")
    return out.stdout


class NetBed:
    def __init__(self, nodes=2, bw=None, delay=None, loss=None, mpiexec=None, keep=False):
        """keep=True (scripts/netbed.py up): the bed outlives this process, the reaper leaves
        it alone, and only `down` removes it."""
        if not 1 <= int(nodes) <= 200:
            raise ValueError(f"nodes must be 1..200, got {nodes}")
        self.n_nodes, self.initial_shape = int(nodes), dict(bw=bw, delay=delay, loss=loss)
        self.mpiexec = str(mpiexec or VENV_BIN / "mpiexec")
        self.keep, self.state = keep, None

    @classmethod
    def attach(cls, bed_id, mpiexec=None):
        """The bed `bed_id` as recorded in its state file (made by another process)."""
        state = st.BedState.load(st.RUN_DIR / f"{bed_id}.json")
        bed = cls(len(state.nodes), mpiexec=mpiexec, keep=True)
        bed.state = state
        return bed

    # -- life cycle -------------------------------------------------------------------------
    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
        self.down()

    def up(self):
        with st.locked():
            st.reap_stale()
            taken = {s.subnet for s in st.all_states()}
            free = [f"10.213.{k}" for k in range(256) if f"10.213.{k}" not in taken]
            if not free:
                raise NetBedError("no free /24 left in 10.213.0.0/16 (256 beds up?)")
            bed_id = f"dpt{os.getpid()}x{next(_serial)}"
            self.state = st.BedState(bed_id, free[0], owner=st.KEPT if self.keep else None)
            self.state.head = f"{bed_id}h"
            self.state.nodes = [f"{bed_id}n{i}" for i in range(self.n_nodes)]
            clash = set(self.state.nodes + [self.state.head]) & st.existing_namespaces()
            if clash:
                raise NetBedError(f"namespaces {sorted(clash)} exist already; not touching them")
            self.state.save()
        if not self.keep:
            guard.watch(self)
        try:
            self._build()
            if any(v is not None for v in self.initial_shape.values()):
                self.shape("all", **self.initial_shape)
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        if self.state is None:
            return
        with st.locked():
            st.teardown(self.state)
        guard.forget(self)
        self.state = None

    # -- names and addresses ----------------------------------------------------------------
    @property
    def id(self):
        return self.state.id

    @property
    def head(self):
        return self.state.head

    @property
    def nodes(self):
        return list(self.state.nodes)

    @property
    def head_address(self):
        return f"{self.state.subnet}.254"

    def address(self, node):
        return f"{self.state.subnet}.{self._index(node) + 1}"

    def _index(self, node):
        return node if isinstance(node, int) else self.state.nodes.index(node)

    def _ns(self, node):
        return self.state.nodes[self._index(node)]

    @property
    def work_dir(self):
        return self.state.work_dir

    # -- building ---------------------------------------------------------------------------
    def _add_namespace(self, ns, hosts_text):
        self.state.namespaces.append(ns)
        self.state.save()                  # recorded before it exists: a crash here is reaped
        ip("netns", "add", ns)
        ip("-n", ns, "link", "set", "lo", "up")
        st.make_etc_netns()
        self.state.etc_netns.append(ns)
        self.state.save()
        (st.ETC_NETNS / ns).mkdir(exist_ok=True)
        # `ip netns exec` bind-mounts this over /etc/hosts: names resolve inside the bed only
        (st.ETC_NETNS / ns / "hosts").write_text(hosts_text)

    def _build(self):
        s, head = self.state, self.state.head
        names = [(self.head_address, head)] + [(self.address(i), ns) for i, ns in enumerate(s.nodes)]
        hosts = "127.0.0.1 localhost\n" + "".join(f"{a} {n}\n" for a, n in names)
        self._add_namespace(head, hosts)
        ip("-n", head, "link", "add", "br0", "type", "bridge")
        ip("-n", head, "link", "set", "br0", "up")
        ip("-n", head, "addr", "add", f"{self.head_address}/24", "dev", "br0")
        for i, ns in enumerate(s.nodes):
            self._add_namespace(ns, hosts)
            ip("-n", head, "link", "add", f"v{i}", "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", head, "link", "set", f"v{i}", "master", "br0", "up")
            ip("-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
        s.work_dir.mkdir(parents=True, exist_ok=True)
        (s.work_dir / "hosts.map").write_text("".join(f"{a} {n} {n}\n{n} {n} {n}\n" for a, n in names))
        launcher = s.work_dir / "ssh"
        launcher.write_text(f'#!/bin/sh\nexec sh {shlex.quote(str(HERE / "launcher.sh"))} '
                            f'{shlex.quote(str(s.work_dir / "hosts.map"))} "$@"\n')
        launcher.chmod(0o755)
        (s.work_dir / "hostfile").write_text("".join(self.address(i) + "\n" for i in range(len(s.nodes))))
        self._wait_links_up()

    def _wait_links_up(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            ports = json.loads(ip("-n", self.head, "-j", "link", "show", "master", "br0"))
            if len(ports) == len(self.state.nodes) and all(p.get("operstate") == "UP" for p in ports):
                return
            if time.monotonic() > deadline:
                raise NetBedError(f"bridge ports of {self.id} not up after {timeout} s: {ports}")
            time.sleep(0.05)

    # -- shaping and faults -----------------------------------------------------------------
    def shape(self, node="all", bw=None, delay=None, loss=None):
        """Replaces the shaping of one node's link (or all): bandwidth both ways, loss and
        delay on what the node sends (a round trip between two nodes gets 2 x delay)."""
        us = shaping.delay_us(delay) if delay is not None else None
        pct = shaping.loss_percent(loss) if loss is not None else None
        if bw is not None:
            shaping.rate_bytes_per_s(bw)
        for i in range(len(self.state.nodes)) if node == "all" else [self._index(node)]:
            ns = self.state.nodes[i]
            st.kill_recorded(self.state.delayers.pop(ns, None))
            self.state.save()
            shaping.clear(ns, self.head, f"v{i}")
            if bw is not None:
                shaping.set_bandwidth(ns, self.head, f"v{i}", bw)
            if pct:
                shaping.set_loss(ns, pct)
            if us:
                self._start_delayer(ns, us)

    def _start_delayer(self, ns, us):
        proc, feed = shaping.start_delayer(ns, us, self.work_dir / f"delay-{ns}.log")
        self.state.delayers[ns] = {"pid": proc.pid, "start": st.process_start(proc.pid)}
        self.state.save()
        shaping.wait_delayer_ready(proc, self.work_dir / f"delay-{ns}.log")
        feed()

    def link_down(self, node):
        ip("-n", self._ns(node), "link", "set", "eth0", "down")

    def link_up(self, node):
        ip("-n", self._ns(node), "link", "set", "eth0", "up")

    def counters(self, node):
        """Bytes through the node's eth0 so far: {"rx": ..., "tx": ...}."""
        stats = json.loads(ip("-n", self._ns(node), "-s", "-j", "link", "show", "dev", "eth0"))[0]
        s64 = stats.get("stats64") or stats["stats"]
        return {"rx": s64["rx"]["bytes"], "tx": s64["tx"]["bytes"]}

    def pids(self, node):
        delayers = {d["pid"] for d in self.state.delayers.values()}
        return [p for p in st.namespace_pids(self._ns(node)) if p not in delayers]

    def kill(self, node="all", sig=signal.SIGKILL):
        for ns in self.state.nodes if node == "all" else [self._ns(node)]:
            for pid in self.pids(ns):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    # -- running across the nodes -----------------------------------------------------------
    def hostfile(self, ranks_per_node=None):
        """A hydra hostfile of the nodes' addresses (`ADDRESS:N` lines with ranks_per_node)."""
        path = self.work_dir / (f"hostfile.{ranks_per_node}" if ranks_per_node else "hostfile")
        suffix = f":{ranks_per_node}" if ranks_per_node else ""
        path.write_text("".join(f"{self.address(i)}{suffix}\n" for i in range(len(self.state.nodes))))
        return path

    def head_argv(self, argv=()):
        """argv run in the head namespace, where mpiexec must run: the proxies dial back to it
        (launcher() gives them its address with -localhost; its host name would not do)."""
        return ["ip", "netns", "exec", self.head, *map(str, argv)]

    def launcher(self, ppn=1):
        """The mpiexec command (a string, without -n) that starts ranks on the nodes, `ppn` per
        node, when run in the head namespace: `dptrain bench --launcher "..."`."""
        argv = [self.mpiexec, "-f", str(self.hostfile()), "-ppn", str(ppn),
                "-launcher", "ssh", "-launcher-exec", str(self.work_dir / "ssh"),
                "-localhost", self.head_address]
        for key, value in LINK_ENV.items():
            argv += ["-genv", key, value]
        return shlex.join(argv)

    def mpiexec_argv(self, n, ppn=1):
        return self.head_argv(shlex.split(self.launcher(ppn)) + ["-n", str(n)])

    def dptrain_argv(self, n, ppn, *args):
        """`bed.dptrain_argv(4, 2, "train", "--model", ...)`: dptrain from this venv across the bed."""
        return self.mpiexec_argv(n, ppn) + [str(VENV_BIN / "dptrain"), *map(str, args)]

    def run(self, argv, timeout=120, **kwargs):
        """Runs argv (e.g. mpiexec_argv(...) + [...]) to completion, output captured as text.
        On timeout everything it started in the bed is killed and TimeoutExpired raised."""
        proc = subprocess.Popen([str(a) for a in argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True, **kwargs)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            self.kill("all")
            st.kill_namespace_processes([self.head], grace=1.0)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
