"""Link shaping for the bed: bandwidth with tbf on both ends of a node's link, loss with an
iptables rule in the node, delay with an NFQUEUE rule served by nfq_delay.c. The kernel this
was written on has no netem (CONFIG_NET_SCH_NETEM unset, no modules), hence the last two."""
import re
import shutil
import subprocess
import time
from pathlib import Path

CHAIN = "DPTNETBED"
HERE = Path(__file__).resolve().parent
BUILD_DIR = HERE / "build"          # ignored by git (tests/netbed/.gitignore)


class ShapingError(RuntimeError):
    pass


def rate_bytes_per_s(bw):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(gbit|mbit|kbit|bit)", str(bw).lower())
    if not m:
        raise ShapingError(f"bandwidth must look like 100mbit or 1gbit, got {bw!r}")
    scale = {"gbit": 1e9, "mbit": 1e6, "kbit": 1e3, "bit": 1}[m.group(2)]
    return int(float(m.group(1)) * scale / 8)


def delay_us(delay):
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|ms|us)", str(delay).lower())
    if not m:
        raise ShapingError(f"delay must look like 50us or 1ms, got {delay!r}")
    return int(float(m.group(1)) * {"s": 1e6, "ms": 1e3, "us": 1}[m.group(2)])


def loss_percent(loss):
    value = float(loss)
    if not 0 <= value <= 100:
        raise ShapingError(f"loss is a percentage 0..100, got {loss!r}")
    return value


def tbf_args(bw):
    """burst: 1 ms at the rate, at least 32 KiB (less starves TCP's GSO packets); queue: 20 ms
    at the rate, at least 1 MiB. The prototype saw 1,011 drops and 4,952 retransmits in 4 s
    at 100 Mbit/s with a 20 ms queue alone, and none with 1 MiB."""
    rate = rate_bytes_per_s(bw)
    burst = max(rate // 1000, 32 * 1024)
    limit = max(rate // 50, 1 << 20)
    return ["rate", str(bw), "burst", str(burst), "limit", str(limit)]


def sh(*argv, check=True):
    out = subprocess.run(list(argv), capture_output=True, text=True)
    if check and out.returncode != 0:
        raise ShapingError(f"{' '.join(argv)}: {out.stderr.strip() or out.returncode}")
    return out


def clear(node_ns, head_ns, port):
    sh("tc", "-n", node_ns, "qdisc", "del", "dev", "eth0", "root", check=False)
    sh("tc", "-n", head_ns, "qdisc", "del", "dev", port, "root", check=False)
    if shutil.which("iptables") and sh("ip", "netns", "exec", node_ns, "iptables", "-t", "mangle",
                                       "-S", CHAIN, check=False).returncode == 0:
        ipt = ["ip", "netns", "exec", node_ns, "iptables", "-t", "mangle"]
        sh(*ipt, "-D", "POSTROUTING", "-o", "eth0", "-j", CHAIN, check=False)
        sh(*ipt, "-F", CHAIN)
        sh(*ipt, "-X", CHAIN)


def set_bandwidth(node_ns, head_ns, port, bw):
    """tbf on the node's eth0 (what it sends) and on its bridge port (what it receives)."""
    args = tbf_args(bw)
    sh("tc", "-n", node_ns, "qdisc", "add", "dev", "eth0", "root", "tbf", *args)
    sh("tc", "-n", head_ns, "qdisc", "add", "dev", port, "root", "tbf", *args)


def filter_chain(node_ns):
    """The node's own mangle chain on eth0's egress (created on first use)."""
    if not shutil.which("iptables"):
        raise ShapingError("loss and delay need iptables (Debian: apt-get install iptables); "
                           "this kernel has no netem")
    ipt = ["ip", "netns", "exec", node_ns, "iptables", "-t", "mangle"]
    if sh(*ipt, "-S", CHAIN, check=False).returncode != 0:
        sh(*ipt, "-N", CHAIN)
        sh(*ipt, "-A", "POSTROUTING", "-o", "eth0", "-j", CHAIN)
    return ipt


def set_loss(node_ns, loss):
    """Drops `loss` percent of what the node sends (100: everything)."""
    ipt = filter_chain(node_ns)
    if loss >= 100:
        sh(*ipt, "-A", CHAIN, "-j", "DROP")
    else:
        sh(*ipt, "-A", CHAIN, "-m", "statistic", "--mode", "random",
           "--probability", f"{loss / 100:.6f}", "-j", "DROP")


def delayer_binary():
    """nfq_delay, compiled with gcc on first use (and when its source changes)."""
    src, binary = HERE / "nfq_delay.c", BUILD_DIR / "nfq_delay"
    if binary.exists() and binary.stat().st_mtime >= src.stat().st_mtime:
        return binary
    if not shutil.which("gcc"):
        raise ShapingError("delay is not available: gcc is needed to build tests/netbed/nfq_delay.c")
    BUILD_DIR.mkdir(exist_ok=True)
    out = subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(src)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise ShapingError(f"delay is not available: building nfq_delay failed: {out.stderr[-500:]}")
    return binary


def start_delayer(node_ns, us, log_path):
    """Starts nfq_delay in the node, then queues the node's egress to it. Returns the Popen
    (the caller records its pid before anything else can fail)."""
    ipt = filter_chain(node_ns)
    binary = delayer_binary()
    log = open(log_path, "ab")
    proc = subprocess.Popen(["ip", "netns", "exec", node_ns, str(binary), "-q", "0", "-d", str(us)],
                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    return proc, lambda: sh(*ipt, "-A", CHAIN, "-j", "NFQUEUE", "--queue-num", "0", "--queue-bypass")


def wait_delayer_ready(proc, log_path, timeout=5.0):
    """Waits for nfq_delay's "bound" line: the NFQUEUE rule goes in only once the queue is
    served (with --queue-bypass an unserved queue would pass packets undelayed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = Path(log_path).read_text(errors="replace") if Path(log_path).exists() else ""
        if "bound" in text:
            return
        if proc.poll() is not None:
            raise ShapingError(f"nfq_delay exited ({proc.returncode}): {text.strip()[-300:]}")
        time.sleep(0.02)
    raise ShapingError(f"nfq_delay did not bind its queue within {timeout} s")
