"""The signal watcher (dptrain/interrupts.py): a SIGTERM/SIGINT that no handler acts on (the
main thread is blocked in C) ends the job after the grace, with 128 + signum; one acted on
does not; during training the first one waits while a watchdog bounds the blocked operation."""
import os
import signal
import time

import pytest

from dptrain import interrupts
from dptrain.comm.watchdog import Watchdog


@pytest.fixture(autouse=True)
def restore_handlers():
    saved = {s: signal.getsignal(s) for s in interrupts.SIGNALS}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def watch(grace=0.3):
    ended = []
    return interrupts.Watcher(0, grace_s=grace, end=lambda line, code: ended.append((line, code))), ended


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)
    return condition()


def test_a_signal_nobody_acts_on_ends_the_job():
    signal.signal(signal.SIGTERM, lambda s, f: None)         # runs, but as if it never could
    watcher, ended = watch()
    with watcher:
        os.kill(os.getpid(), signal.SIGTERM)
        assert wait_for(lambda: ended)
    assert ended == [("dptrain: interrupted by SIGTERM (blocked: no response within 0.3 s; "
                      "ending the job)", 143)]


def test_a_signal_acted_on_is_left_to_the_main_thread():
    signal.signal(signal.SIGINT, lambda s, f: interrupts.acted(s))
    watcher, ended = watch()
    with watcher:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.0)
    assert ended == []


def test_while_training_the_first_signal_waits_for_a_bounded_operation():
    signal.signal(signal.SIGTERM, lambda s, f: None)
    dog = Watchdog(60, on_expire=lambda m: None)
    watcher, ended = watch()
    try:
        with watcher, interrupts.patient():
            token = dog.arm("checkpoint agreement", "checkpoint")   # another rank writes it
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
            assert ended == []
            dog.disarm(token)
            assert wait_for(lambda: ended)
            assert ended[0][1] == 143
    finally:
        dog.close()


def test_a_second_signal_is_not_waited_for():
    signal.signal(signal.SIGTERM, lambda s, f: None)
    dog = Watchdog(60, on_expire=lambda m: None)
    watcher, ended = watch()
    try:
        with watcher, interrupts.patient():
            dog.arm("allreduce", "step")
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.5)
            assert ended == []
            os.kill(os.getpid(), signal.SIGTERM)
            assert wait_for(lambda: ended)
    finally:
        dog.close()
