"""Whether this machine can hold a bed: one line saying why not, or None."""
import functools
import os
import shutil
import subprocess


@functools.lru_cache(maxsize=None)
def skip_reason(need_iptables=False):
    if os.geteuid() != 0:
        return "the multi-node bed needs root (network namespaces, tc)"
    for tool in ("ip", "tc", "unshare"):
        if not shutil.which(tool):
            return f"the multi-node bed needs `{tool}` (iproute2 / util-linux)"
    if need_iptables and not shutil.which("iptables"):
        return "loss and delay on the bed need iptables (CI installs it: .ci/run)"
    return _kernel_reason(need_iptables)


def _kernel_reason(need_iptables):
    """Tries what the bed uses in a throw-away namespace: veth, bridge, tbf (and iptables)."""
    ns = f"dptprobe{os.getpid()}"
    steps = [["ip", "netns", "add", ns],
             ["ip", "-n", ns, "link", "add", "b0", "type", "bridge"],
             ["ip", "-n", ns, "link", "add", "v0", "type", "veth", "peer", "name", "v1"],
             ["tc", "-n", ns, "qdisc", "add", "dev", "v0", "root", "tbf",
              "rate", "100mbit", "burst", "32768", "limit", "1048576"]]
    if need_iptables:
        steps.append(["ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-A", "POSTROUTING",
                      "-m", "statistic", "--mode", "random", "--probability", "0.5", "-j", "NFQUEUE",
                      "--queue-num", "0", "--queue-bypass"])
    try:
        for argv in steps:
            out = subprocess.run(argv, capture_output=True, text=True)
            if out.returncode != 0:
                detail = (out.stderr.strip().splitlines() or ["failed"])[-1]
                return f"this machine cannot build the bed: `{' '.join(argv[:6])} ...`: {detail}"
        return None
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
