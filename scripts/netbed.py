#!/usr/bin/env python3
"""The multi-node test bed for people (docs/testbed.md): network namespaces as nodes on this
machine, kept up between commands until `down`. Needs root. Run with the project's venv:

    .venv/bin/python scripts/netbed.py up --nodes 2 --bw 100mbit --delay 50us
    .venv/bin/python scripts/netbed.py run -n 4 --ppn 2 -- .venv/bin/dptrain train ...
    .venv/bin/python scripts/netbed.py head -- .venv/bin/dptrain bench --launcher "$(... launcher --ppn 2)"
    .venv/bin/python scripts/netbed.py shape 1 --loss 100 | link 1 down | status | down
"""
import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))     # before scripts/: `netbed` is the package there

from netbed import NetBed, NetBedError, skip_reason  # noqa: E402
from netbed import state as st  # noqa: E402


def mpiexec():
    here = Path(sys.executable).parent / "mpiexec"
    return here if here.exists() else ROOT / ".venv" / "bin" / "mpiexec"


def pick(bed_id):
    """The bed named, or the only one up."""
    ids = [s.id for s in st.all_states()]
    if bed_id:
        if bed_id not in ids:
            sys.exit(f"netbed: error: no bed {bed_id!r} (up: {', '.join(ids) or 'none'})")
        return NetBed.attach(bed_id, mpiexec=mpiexec())
    if len(ids) != 1:
        sys.exit(f"netbed: error: {len(ids)} beds up ({', '.join(ids) or 'none'}): name one with --bed")
    return NetBed.attach(ids[0], mpiexec=mpiexec())


def node_arg(value):
    return "all" if value == "all" else int(value)


def describe(bed):
    print(f"bed {bed.id}: head {bed.head} {bed.head_address} (mpiexec runs here)")
    for i, ns in enumerate(bed.nodes):
        c = bed.counters(i)
        print(f"  node {i}: namespace {ns} eth0 {bed.address(i)}  rx {c['rx']} B tx {c['tx']} B")
    print(f"  hostfile {bed.hostfile()}")
    print(f"  launcher (in the head): {bed.launcher(ppn=1)}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="netbed.py", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="build a bed and keep it up")
    up.add_argument("--nodes", type=int, default=2)
    for cmd in (up, sub.add_parser("shape", help="replace a node's (or all) shaping")):
        if cmd is not up:
            cmd.add_argument("node", type=node_arg, help="node index or 'all'")
        cmd.add_argument("--bw", help="e.g. 100mbit, 1gbit (tbf, both directions)")
        cmd.add_argument("--delay", help="e.g. 50us, 1ms (added to what each node sends)")
        cmd.add_argument("--loss", type=float, help="percent of what each node sends, 100 = all")
    down = sub.add_parser("down", help="remove beds (default: the only one)")
    down.add_argument("ids", nargs="*")
    down.add_argument("--all", action="store_true")
    link = sub.add_parser("link", help="take a node's link down or bring it up")
    link.add_argument("node", type=int)
    link.add_argument("state", choices=["down", "up"])
    run = sub.add_parser("run", help="run a command on the nodes with mpiexec")
    run.add_argument("-n", type=int, required=True)
    run.add_argument("--ppn", type=int, default=1)
    head = sub.add_parser("head", help="run a command in the head namespace")
    launcher = sub.add_parser("launcher", help="print the mpiexec command for --launcher")
    launcher.add_argument("--ppn", type=int, default=1)
    for cmd in (run, head):
        cmd.add_argument("--timeout", type=float, default=None)
        cmd.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("status", help="list the beds")
    for cmd in (sub.choices[c] for c in ("shape", "link", "run", "head", "launcher")):
        cmd.add_argument("--bed", help="bed id (default: the only one up)")
    a = p.parse_args(argv)

    if a.cmd in ("up", "shape", "link", "run", "head", "launcher", "down") and skip_reason():
        sys.exit(f"netbed: error: {skip_reason()}")
    try:
        if a.cmd == "up":
            bed = NetBed(a.nodes, bw=a.bw, delay=a.delay, loss=a.loss, mpiexec=mpiexec(), keep=True)
            describe(bed.up())
        elif a.cmd == "down":
            with st.locked():
                for s in st.all_states():
                    if a.all or s.id in a.ids or (not a.ids and len(st.all_states()) == 1):
                        st.teardown(s)
                        print(f"removed bed {s.id}")
        elif a.cmd == "status":
            for s in st.all_states():
                owner = "kept" if s.owner == st.KEPT else f"pid {s.owner['pid']}"
                print(f"{s.id}: {len(s.nodes)} nodes, {s.subnet}.0/24, owner {owner}"
                      f"{'' if s.owner_alive() else ' (dead: reaped by the next bed)'}")
        elif a.cmd == "shape":
            pick(a.bed).shape(a.node, bw=a.bw, delay=a.delay, loss=a.loss)
        elif a.cmd == "link":
            bed = pick(a.bed)
            (bed.link_down if a.state == "down" else bed.link_up)(a.node)
        elif a.cmd == "launcher":
            print(pick(a.bed).launcher(a.ppn))
        else:
            bed = pick(a.bed)
            command = a.command[1:] if a.command[:1] == ["--"] else a.command
            if not command:
                sys.exit("netbed: error: no command given (after --)")
            argv = bed.mpiexec_argv(a.n, a.ppn) + command if a.cmd == "run" else bed.head_argv(command)
            return subprocess.run(argv, timeout=a.timeout).returncode
    except (NetBedError, ValueError, RuntimeError) as e:
        sys.exit(f"netbed: error: {e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
