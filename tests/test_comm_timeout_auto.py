"""--comm-timeout auto, driven by a hand clock: a step's collectives get max(floor, 20 x the
slowest step so far) once the first steps are measured, every other phase (and the first
steps) the generous 300 s; a fixed number bounds everything alike; time stopped counts
neither against a deadline nor into a step. The expiry message says how the limit was derived
and, from the heartbeats, which ranks did not answer."""
import threading
import time

import pytest

from dptrain.comm import timeout_policy
from dptrain.comm.heartbeat import Heartbeat
from dptrain.comm.timeout_policy import TimeoutPolicy, parse
from dptrain.comm.watchdog import Watchdog
from dptrain.errors import UsageError
from dptrain.train.config import TrainConfig, coerce
from test_watchdog_clock import Clock, run_for


_made = []


@pytest.fixture(autouse=True)
def _close_watchdogs():
    """A watchdog left armed counts for interrupts.any_armed() in later tests of the process."""
    yield
    while _made:
        _made.pop().close()


def watchdog(timeout="auto"):
    clock = Clock()
    _made.append(Watchdog(timeout, rank=0, clock=clock, start=False))
    return _made[-1], clock


def measure_steps(w, clock, seconds):
    for k, took in enumerate(seconds):
        w.step_began(k)
        clock.now += took
        w.step_ended()


@pytest.mark.parametrize("value,policy", [
    ("auto", TimeoutPolicy()), (None, TimeoutPolicy()), ("auto:10", TimeoutPolicy(floor=10.0)),
    (" AUTO:2.5", TimeoutPolicy(floor=2.5)), (60, TimeoutPolicy(fixed=60.0)),
    ("60", TimeoutPolicy(fixed=60.0)), (1.5, TimeoutPolicy(fixed=1.5)),
])
def test_values_parse(value, policy):
    assert parse(value) == policy


@pytest.mark.parametrize("value", ["auto:0", "auto:", "auto:x", "auto:nan", "auto:-3", "fast", 0,
                                   0.5, 1e300, "inf", True, "auto:1e9"])
def test_bad_values_are_usage_errors_naming_the_flag(value):
    with pytest.raises(UsageError, match="^--comm-timeout: expected auto, auto:FLOOR or a number"):
        parse(value)


def test_the_config_takes_auto_from_files_and_the_api():
    assert TrainConfig().comm_timeout == "auto"
    assert coerce("comm_timeout", "auto:5", "config file key comm_timeout") == "auto:5"
    assert coerce("comm_timeout", 30, "config file key comm_timeout") == 30.0
    TrainConfig(comm_timeout="auto:5").validate()
    with pytest.raises(UsageError, match="--comm-timeout"):
        TrainConfig(comm_timeout="auto:zero").validate()


def test_steps_get_twenty_times_the_slowest_step_but_never_less_than_the_floor():
    w, clock = watchdog("auto:2")
    assert w.limit("step")[0] == 300.0                   # nothing measured yet: generous
    measure_steps(w, clock, [0.4, 0.5])
    assert w.limit("step") == (300.0, "--comm-timeout auto: 300 s until 3 steps are measured "
                                      "(2 so far)")
    measure_steps(w, clock, [0.3])
    assert w.limit("step") == (10.0, "--comm-timeout auto: 20 x slowest step 0.5 s = 10 s, "
                                     "floor 2 s")
    measure_steps(w, clock, [0.01] * 5)                  # faster steps lower nothing
    assert w.limit("step")[0] == 10.0
    fast, clock2 = watchdog("auto:2")
    measure_steps(fast, clock2, [0.01] * 3)
    assert fast.limit("step")[0] == 2.0                  # 0.2 s: the floor holds
    default, clock3 = watchdog()
    measure_steps(default, clock3, [0.01] * 3)
    assert default.limit("step")[0] == 30.0


@pytest.mark.parametrize("phase", sorted(set(timeout_policy.PHASES) - {"step"}))
def test_every_other_phase_keeps_the_generous_limit(phase):
    w, clock = watchdog("auto:2")
    measure_steps(w, clock, [0.01] * 10)
    assert w.limit(phase)[0] == 300.0
    assert parse("auto:600").limit(phase, 0.01, 10)[0] == 600.0      # never below the floor


def test_a_fixed_number_bounds_every_phase_alike():
    w, clock = watchdog(45)
    measure_steps(w, clock, [0.01] * 10)
    assert {w.limit(p) for p in timeout_policy.PHASES} == {(45.0, "--comm-timeout 45")}


def test_an_unknown_phase_is_a_programming_error():
    w, _ = watchdog()
    with pytest.raises(ValueError, match="unknown watchdog phase"):
        w.arm("allreduce", "training")


def test_a_slow_but_alive_step_is_not_killed_a_dead_one_is():
    w, clock = watchdog("auto:1")
    measure_steps(w, clock, [0.4] * 3)                   # limit 8 s
    token = w.arm("allreduce of bucket 0 at step 3", "step")
    assert run_for(w, clock, 3 * 0.4) is None            # a step three times slower
    w.disarm(token)
    w.arm("allreduce of bucket 0 at step 4", "step")
    assert run_for(w, clock, 7.0) is None
    fired = run_for(w, clock, 2.0)
    assert fired == ("rank 0: allreduce of bucket 0 at step 4 did not complete within 8 s "
                     "(--comm-timeout auto: 20 x slowest step 0.4 s = 8 s, floor 1 s)")


def test_planning_inside_a_step_does_not_count_into_it():
    w, clock = watchdog("auto:1")
    w.step_began(0)
    with w.guard("link measurement (allreduce timings)", "plan"):
        run_for(w, clock, 9.0)                           # running, ticking
        clock.now += 20.0                                # and stopped, noticed at its end
    clock.now += 0.3
    w.step_ended()
    assert w.slowest_step == pytest.approx(0.3)


def test_a_pause_within_a_step_does_not_count_into_it():
    w, clock = watchdog("auto:1")
    w.step_began(0)
    clock.now += 0.2
    clock.now += 60.0                   # SIGSTOP of the whole job mid-step, no tick meanwhile
    w.step_ended()
    assert w.slowest_step <= 0.2 and w.paused_s > 59     # at most what it ran
    measure_steps(w, clock, [0.2, 0.2])
    assert w.limit("step")[0] == pytest.approx(4.0)


def test_a_pause_of_the_whole_job_does_not_end_a_step_collective():
    w, clock = watchdog("auto:2")
    measure_steps(w, clock, [0.01] * 3)
    w.arm("allreduce of bucket 0 at step 3", "step")
    assert run_for(w, clock, 1.0) is None
    clock.now += 30.0                                    # stopped, then continued
    assert run_for(w, clock, 0.9) is None
    assert run_for(w, clock, 0.5) is not None            # its 2 s ran out only now


class FakeComm:
    def __init__(self, rank=0, size=4, isend=None):
        self.rank, self.size, self.isend = rank, size, isend

    def Get_rank(self):
        return self.rank

    def Get_size(self):
        return self.size

    def Isend(self, *a, **k):
        return self.isend()


def test_the_heartbeat_names_the_silent_and_the_behind():
    clock = Clock()
    hb = Heartbeat(FakeComm(), clock, period=1.0, start=False)
    hb.at(7, 40, True)                                   # this rank waits in operation 40
    hb.heard = {1: (clock.now, (7, 40, 1)),              # there with it
                2: (clock.now - 9, (6, 31, 0)),          # stopped long ago
                3: (clock.now, (7, 39, 0))}              # alive, never began operation 40
    assert hb.who_did_not_answer(limit=30) == (
        "ranks that did not answer: 2 (no heartbeat for 9 s, last at step 6), 3 (alive, but at "
        "step 7 operation 39, outside any collective; this rank at step 7 operation 40)")
    clock.now += 3                 # a short limit: silent after 2.5 beats, not after 5 s
    assert hb.who_did_not_answer(limit=3).startswith("ranks that did not answer: 1 (no heartbeat "
                                                     "for 3 s, last at step 7), 2 (")
    clock.now -= 3
    hb.heard = {r: (clock.now, (7, 40, 1)) for r in (1, 2, 3)}
    hb.last_beat = clock.now
    assert hb.who_did_not_answer(limit=30).startswith("every rank answers the heartbeat")
    hb.heard[2] = (clock.now, (8, 44, 1))            # this rank stuck in its own work
    assert hb.who_did_not_answer(limit=30) == (
        "this rank is the one behind: rank 2 began later operations (this rank at step 7 "
        "operation 40: its own work is stuck or slow)")


def expire_with(isend):
    """A real watchdog (ticking) whose heartbeat's MPI calls ``isend``; the expiry message."""
    fired = threading.Event()
    messages = []
    w = Watchdog(1, rank=0, on_expire=lambda m: (messages.append(m), fired.set()))
    w.heartbeat = Heartbeat(FakeComm(isend=isend), w.run_clock, period=0.05)
    try:
        w.arm("allreduce of bucket 0 at step 9", timeout_s=0.3)
        assert fired.wait(10), "the watchdog never fired"
    finally:
        w.close()
    return messages[0]


def test_a_failing_heartbeat_does_not_stop_the_watchdog():
    def broken():
        raise RuntimeError("MPI_ERR_COMM")
    message = expire_with(broken)
    assert "did not complete within 0.3 s" in message
    assert "the heartbeat channel failed (MPI_ERR_COMM)" in message


def test_a_heartbeat_blocked_in_mpi_does_not_stop_the_watchdog():
    release = threading.Event()

    def blocks():
        release.wait(30)
        raise RuntimeError("released")
    t0 = time.monotonic()
    try:
        message = expire_with(blocks)
    finally:
        release.set()
    assert "did not complete within 0.3 s" in message and time.monotonic() - t0 < 5


def listening(w, size=3):
    """A heartbeat (not started) for ``w``, every peer just heard at step 3."""
    w.heartbeat = Heartbeat(FakeComm(size=size), w.run_clock, period=1.0, start=False)
    w.heartbeat.heard = {r: (w.run_clock(), (3, 10, 1)) for r in range(1, size)}
    return w.heartbeat


def beating(w, clock, seconds, peers=(1, 2), own=True):
    """Tick ``w`` for ``seconds`` while ``peers`` (and, if ``own``, this rank) keep beating."""
    hb, end = w.heartbeat, clock.now + seconds
    while clock.now < end:
        clock.now += w.period
        if own:
            hb.last_beat = w.run_clock()
        for peer in peers:
            hb.heard[peer] = (w.run_clock(), (3, 10, 1))
        fired = w.tick()
        if fired:
            return fired
    return None


def test_a_rank_silent_during_a_checkpoint_gets_the_step_limit_not_the_phase_s():
    w, clock = watchdog("auto:1")
    measure_steps(w, clock, [0.4] * 3)                   # step limit 8 s; checkpoints 300 s
    listening(w)
    w.arm("agreement after the checkpoint of step 3", "checkpoint")
    assert beating(w, clock, 30.0) is None               # a slow write, every rank beating
    fired = beating(w, clock, 20.0, peers=(1,))          # rank 2 stops answering
    assert fired == (
        "rank 0: agreement after the checkpoint of step 3 did not complete within 8 s "
        "(--comm-timeout auto: 20 x slowest step 0.4 s = 8 s, floor 1 s: the limit of any "
        "collective while a rank is silent; --comm-timeout auto: 300 s for checkpoint writing "
        "otherwise); ranks that did not answer: 2 (no heartbeat for 8 s, last at step 3)")


def test_an_operation_begun_after_the_silence_still_waits_the_step_limit():
    w, clock = watchdog("auto:1")
    measure_steps(w, clock, [0.4] * 3)
    listening(w)
    assert beating(w, clock, 20.0, peers=(1,)) is None   # rank 2 silent, nothing armed
    w.arm("allreduce of the evaluation at step 3", "eval")
    assert beating(w, clock, 7.0, peers=(1,)) is None
    assert "allreduce of the evaluation at step 3 did not complete within 8 s" \
        in beating(w, clock, 2.0, peers=(1,))


def test_no_silence_verdict_without_a_beating_heartbeat_or_a_measured_step():
    w, clock = watchdog("auto:1")
    listening(w)
    w.arm("agreement after the checkpoint of step 0", "checkpoint")
    assert beating(w, clock, 30.0, peers=()) is None     # no step measured: 300 s
    w, clock = watchdog("auto:1")
    measure_steps(w, clock, [0.4] * 3)
    listening(w)
    w.arm("agreement after the checkpoint of step 3", "checkpoint")
    # this rank's own heartbeat stuck: its silence about the peers says nothing of them
    assert beating(w, clock, 30.0, peers=(), own=False) is None
    w.heartbeat.broken = "the heartbeat channel failed (MPI_ERR_COMM)"
    assert beating(w, clock, 30.0, peers=()) is None


def test_a_fixed_limit_is_not_shortened_by_a_silence():
    w, clock = watchdog(20)
    measure_steps(w, clock, [0.4] * 3)
    listening(w)
    w.arm("agreement after the checkpoint of step 3", "checkpoint")
    assert beating(w, clock, 18.0, peers=()) is None
    assert beating(w, clock, 4.0, peers=()).startswith(
        "rank 0: agreement after the checkpoint of step 3 did not complete within 20 s "
        "(--comm-timeout 20); ranks that did not answer: 1 (no heartbeat")
