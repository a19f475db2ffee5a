"""The multi-node bed (tests/netbed): bytes cross the links, shaping bounds them, faults cut
them, and nothing the bed made outlives it, however the test or its owner ends."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netbed import NetBed, skip_reason
from netbed import state as st
from netbed.reach import connect_rtt

PROBE = str(Path(__file__).with_name("allreduce_across.py"))
MIB = 1 << 20


def run_allreduce(bed, n, ppn, nbytes):
    out = bed.run(bed.mpiexec_argv(n, ppn) + [sys.executable, PROBE, str(nbytes)], timeout=90)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = [r for line in out.stdout.splitlines() if line.startswith("RESULT ")
             for r in json.loads(line[len("RESULT "):])]
    assert sorted(r["rank"] for r in lines) == list(range(n)), out.stdout
    assert all(r["sum_ok"] for r in lines)
    return lines


def leftovers(bed_id):
    """What the bed named `bed_id` might leave: namespaces, /etc/netns entries, links in the
    root namespace, its state file and work dir, processes it started."""
    found = [ns for ns in st.existing_namespaces() if ns.startswith(bed_id)]
    found += [str(p) for p in st.ETC_NETNS.glob(f"{bed_id}*")] if st.ETC_NETNS.exists() else []
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    found += [line for line in links.splitlines() if bed_id in line]
    found += [str(p) for p in st.RUN_DIR.glob(f"{bed_id}*")]
    return found


def test_allreduce_bytes_cross_each_nodes_link(netbed):
    bed = netbed(nodes=2)
    before = [bed.counters(i) for i in range(2)]
    ranks = run_allreduce(bed, n=2, ppn=1, nbytes=4 * MIB)
    after = [bed.counters(i) for i in range(2)]
    assert len({r["host"] for r in ranks}) == 2          # one rank in each node
    for i in range(2):
        for way in ("tx", "rx"):
            assert after[i][way] - before[i][way] >= 4 * MIB, (i, way, before, after)


def test_bandwidth_limit_bounds_the_transfer_from_below(netbed):
    bed = netbed(nodes=2, bw="100mbit")
    ranks = run_allreduce(bed, n=2, ppn=1, nbytes=4 * MIB)
    wire_time = 4 * MIB / (100e6 / 8)       # each rank sends its whole buffer once
    assert min(r["elapsed"] for r in ranks) >= 0.8 * wire_time, ranks   # tbf's burst: 20 %


def test_ranks_on_one_node_share_it_and_only_it(netbed):
    bed = netbed(nodes=2)
    ranks = run_allreduce(bed, n=4, ppn=2, nbytes=64 * 1024)
    assert all(r["shared_size"] == 2 for r in ranks), ranks
    by_host = {}
    for r in ranks:
        by_host.setdefault(r["host"], []).append(r["rank"])
    assert sorted(by_host.values()) == [[0, 1], [2, 3]], by_host


def test_link_down_cuts_the_node_off_and_link_up_restores_it(netbed):
    bed = netbed(nodes=2, mpi=False)
    assert connect_rtt(bed, 0, bed.address(1)) is not None
    bed.link_down(1)
    assert connect_rtt(bed, 0, bed.address(1), timeout=0.5) is None
    bed.link_up(1)
    assert connect_rtt(bed, 0, bed.address(1), timeout=3.0) is not None



def test_a_run_past_its_timeout_leaves_no_process_in_the_nodes(netbed):
    bed = netbed(nodes=2)
    # a rank that leaves hydra's process groups and ignores SIGTERM, as a stuck one might
    sleeper = [sys.executable, "-c", "import os, signal, time; signal.signal(signal.SIGTERM, "
               "signal.SIG_IGN); os.fork() or (os.setsid(), time.sleep(120)); time.sleep(120)"]
    with pytest.raises(subprocess.TimeoutExpired):
        bed.run(bed.mpiexec_argv(2, 1) + sleeper, timeout=4)
    assert bed.pids(0) == [] and bed.pids(1) == []

def test_delay_and_loss(netbed):
    bed = netbed(nodes=2, mpi=False, delay="1ms")
    assert connect_rtt(bed, 0, bed.address(1), tries=5) >= 2e-3   # 1 ms out, 1 ms back
    bed.shape(1, loss=100)
    assert connect_rtt(bed, 0, bed.address(1), timeout=0.5) is None
    bed.shape("all")
    assert connect_rtt(bed, 0, bed.address(1), tries=5) < 2e-3


def test_nothing_outlives_a_failing_test_body():
    needs = "loss and delay" if skip_reason(need_iptables=True) is None else None
    if skip_reason():
        pytest.skip(skip_reason())
    with pytest.raises(RuntimeError, match="the test body failed"):
        with NetBed(nodes=2, delay="100us" if needs else None) as bed:
            bed_id, delayers = bed.id, dict(bed.state.delayers)
            assert leftovers(bed_id)
            raise RuntimeError("the test body failed")
    assert leftovers(bed_id) == []
    assert all(st.process_start(d["pid"]) != d["start"] for d in delayers.values())


OWNER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from netbed import NetBed
bed = NetBed(nodes=2).up()
print(bed.id, flush=True)
time.sleep(120)
"""


def start_owner():
    owner = subprocess.Popen([sys.executable, "-c", OWNER, str(Path(__file__).parents[1])],
                             stdout=subprocess.PIPE, text=True)
    bed_id = owner.stdout.readline().strip()
    assert bed_id and leftovers(bed_id), "the owner did not build its bed"
    return owner, bed_id


def test_sigterm_to_the_owner_tears_its_bed_down():
    if skip_reason():
        pytest.skip(skip_reason())
    owner, bed_id = start_owner()
    owner.send_signal(signal.SIGTERM)
    assert owner.wait(timeout=30) == -signal.SIGTERM
    assert leftovers(bed_id) == []


def test_next_bed_reaps_the_bed_of_a_killed_owner():
    if skip_reason():
        pytest.skip(skip_reason())
    owner, bed_id = start_owner()
    owner.kill()
    owner.wait(timeout=30)
    assert leftovers(bed_id)                       # SIGKILL: nobody cleaned up
    with NetBed(nodes=1):
        assert leftovers(bed_id) == []


def test_etc_netns_is_made_under_the_beds_lock(tmp_path, monkeypatch):
    """Two test workers may build beds at once: both found /etc/netns missing and the second
    mkdir failed (FileExistsError) until making it went under the lock that beds take to
    allocate and tear down. Here another process holds the lock: nothing is made until it
    lets go."""
    import threading
    monkeypatch.setattr(st, "RUN_DIR", tmp_path / "run")
    monkeypatch.setattr(st, "ETC_NETNS", tmp_path / "etc-netns")
    st.RUN_DIR.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys\nf = open(sys.argv[1], 'w')\n"
         "fcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.read()",
         str(st.RUN_DIR / "lock")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        maker = threading.Thread(target=st.make_etc_netns)
        maker.start()
        maker.join(timeout=0.5)
        assert maker.is_alive() and not st.ETC_NETNS.exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=10)
    maker.join(timeout=10)
    assert st.ETC_NETNS.is_dir() and (st.RUN_DIR / st.CREATED_ETC_NETNS).exists()
    st.make_etc_netns()                          # present: nothing to do, no error


def test_two_beds_coexist_apart(netbed):
    first, second = netbed(nodes=2, mpi=False), netbed(nodes=2, mpi=False)
    assert first.id != second.id and first.address(0) != second.address(0)
    assert not set(first.nodes) & set(second.nodes)
    assert connect_rtt(second, 0, second.address(1)) is not None
    assert connect_rtt(first, 0, second.address(1), timeout=0.3) is None   # no path between beds
    second.down()
    assert connect_rtt(first, 0, first.address(1)) is not None



CHILD_ONLY = pytest.mark.skipif("DPTRAIN_NETBED_FAILING_BODY" not in os.environ,
                                reason="run by test_the_fixture_tears_down_after_a_failing_test")


@CHILD_ONLY
def test_failing_body_with_the_fixture(netbed):
    bed = netbed(nodes=2, mpi=False)
    Path(os.environ["DPTRAIN_NETBED_FAILING_BODY"]).write_text(bed.id)
    assert False, "this test fails on purpose"


@CHILD_ONLY
def test_failing_body_left_nothing():
    """Runs next in the same session: the interpreter's exit would clean up anyway."""
    assert leftovers(Path(os.environ["DPTRAIN_NETBED_FAILING_BODY"]).read_text()) == []


def test_the_fixture_tears_down_after_a_failing_test(tmp_path):
    if skip_reason():
        pytest.skip(skip_reason())
    record = tmp_path / "bed_id"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          f"{__file__}::test_failing_body_with_the_fixture",
                          f"{__file__}::test_failing_body_left_nothing"],
                         env={**os.environ, "DPTRAIN_NETBED_FAILING_BODY": str(record)},
                         capture_output=True, text=True, timeout=120)
    assert "fails on purpose" in out.stdout and "1 failed, 1 passed" in out.stdout, out.stdout[-1500:]
    assert leftovers(record.read_text()) == []
