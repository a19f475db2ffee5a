"""Network checks run inside a node of a bed: a TCP connect to a port nobody listens on is
answered by a reset when the peer is reachable (refused) and by nothing when it is not."""
import subprocess
import sys

_CONNECT = """
import socket, sys, time
best = None
for _ in range(int(sys.argv[3])):
    s = socket.socket(); s.settimeout(float(sys.argv[2])); t = time.perf_counter()
    try:
        s.connect((sys.argv[1], 9))
    except ConnectionRefusedError:
        best = min(best or 9e9, time.perf_counter() - t)
    except OSError:
        pass
    finally:
        s.close()
print(best if best is not None else "unreachable")
"""


def connect_rtt(bed, src_node, address, timeout=1.0, tries=1):
    """The fastest of `tries` TCP round trips (SYN out, RST back) from src_node to address,
    in seconds, or None when nothing came back."""
    out = subprocess.run(["ip", "netns", "exec", bed.nodes[bed.nodes.index(src_node)
                                                         if isinstance(src_node, str) else src_node],
                          sys.executable, "-c", _CONNECT, address, str(timeout), str(tries)],
                         capture_output=True, text=True, timeout=30 + timeout * tries)
    value = out.stdout.strip()
    if out.returncode != 0 or not value:
        raise RuntimeError(f"reachability check failed: {out.stderr.strip()[-300:]}")
    return None if value == "unreachable" else float(value)
