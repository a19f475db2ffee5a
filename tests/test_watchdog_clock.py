"""The watchdog's clock, driven by hand: time the process spent stopped does not count, a
peer frozen alone (our own clock keeps ticking) is still caught at its deadline."""
from dptrain.comm.watchdog import PAUSE_SLACK_S, Watchdog


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def watchdog(timeout=10.0):     # ticks every second
    clock = Clock()
    return Watchdog(timeout, rank=1, clock=clock, start=False), clock


def run_for(w, clock, seconds):
    """Tick every period for ``seconds`` (a process that runs); the first expiry, or None."""
    end = clock.now + seconds
    while clock.now < end:
        clock.now += w.period
        fired = w.tick()
        if fired:
            return fired
    return None


def test_an_operation_past_its_deadline_is_reported():
    w, clock = watchdog()
    w.arm("allreduce of bucket 0 (64 bytes) at step 4", "step")
    assert run_for(w, clock, 10.0) is None
    assert run_for(w, clock, 1.0) == ("rank 1: allreduce of bucket 0 (64 bytes) at step 4 did not "
                                      "complete within 10 s (--comm-timeout 10)")


def test_time_stopped_does_not_count():
    w, clock = watchdog()
    w.arm("broadcast", "setup")
    assert run_for(w, clock, 4.0) is None
    clock.now += 60.0                     # SIGSTOP of the whole job, then SIGCONT
    assert w.tick() is None
    assert w.paused_s == 59.0             # the period's own second counts as run
    assert run_for(w, clock, 5.0) is None          # 4 + 1 + 5 of the 10 s have run
    assert run_for(w, clock, 1.0) is not None      # and the deadline still holds


def test_a_short_delay_is_not_taken_for_a_pause():
    w, clock = watchdog()
    w.arm("broadcast", "setup")
    clock.now += w.period + PAUSE_SLACK_S * 0.9
    assert w.tick() is None and w.paused_s == 0
    assert run_for(w, clock, 9.0) is not None


def test_a_peer_frozen_alone_is_caught_while_our_clock_runs():
    w, clock = watchdog()
    w.arm("allreduce of the step metrics at step 7", "step")
    assert run_for(w, clock, 11.0) is not None and w.paused_s == 0


def test_an_operation_armed_after_a_pause_gets_its_whole_timeout():
    w, clock = watchdog()
    clock.now += 30.0
    w.tick()
    w.arm("barrier", timeout_s=2.0)
    assert run_for(w, clock, 2.0) is None
    assert "within 2 s" in run_for(w, clock, 1.0)
