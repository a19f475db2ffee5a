"""The hierarchical reduction across real links: 2 nodes x 2 ranks, each node's eth0 carries
about one buffer's worth of bytes per Allreduce (a flat ring over 4 ranks would send 1.5)."""
import json
import sys
from pathlib import Path

import pytest

PROBE = str(Path(__file__).with_name("hierarchical_across.py"))
MIB = 1 << 20
NBYTES = 4 * MIB


def sent_per_allreduce(bed, mode):
    before = [bed.counters(i)["tx"] for i in range(2)]
    out = bed.run(bed.mpiexec_argv(4, 2) + [sys.executable, PROBE, str(NBYTES), mode], timeout=120)
    after = [bed.counters(i)["tx"] for i in range(2)]
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(line for line in out.stdout.splitlines()
                             if line.startswith("RESULT "))[len("RESULT "):])
    ranks = result["ranks"]
    assert all(r["ok"] for r in ranks), ranks
    assert [r["node"] for r in sorted(ranks, key=lambda r: r["rank"])] == [0, 0, 1, 1]
    assert all(r["hierarchical"] == (mode == "hierarchical") for r in ranks)
    return [(a - b) / result["repeats"] for a, b in zip(after, before)]


def test_each_node_sends_about_one_buffer_per_allreduce(netbed):
    bed = netbed(nodes=2)
    sent = sent_per_allreduce(bed, "hierarchical")
    # the start-up's own messages and TCP/IP headers (about 5 %) come on top of the buffer
    for node, nbytes in enumerate(sent):
        assert NBYTES <= nbytes <= 1.15 * NBYTES, (node, nbytes / NBYTES)
