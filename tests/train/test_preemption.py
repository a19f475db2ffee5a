"""Signals during training: the first asks for a stop after the step, a second ends at once,
and once a stop is under way a late signal cannot turn a clean exit into an interrupted one."""
import os
import signal

import pytest

from dptrain.train.preemption import PreemptionGuard, StopRequested


@pytest.fixture(autouse=True)
def restore_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def test_first_signal_is_recorded_second_calls_back():
    calls = []
    with PreemptionGuard(on_second_signal=lambda signum: calls.append(signum)) as guard:
        os.kill(os.getpid(), signal.SIGTERM)
        assert guard.signum == signal.SIGTERM and calls == []
        os.kill(os.getpid(), signal.SIGINT)
        assert calls == [signal.SIGINT]


def test_second_signal_without_callback_interrupts():
    with pytest.raises(KeyboardInterrupt):
        with PreemptionGuard():
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)


def test_after_a_stop_late_signals_are_ignored():
    with pytest.raises(StopRequested):
        with PreemptionGuard():
            os.kill(os.getpid(), signal.SIGINT)
            raise StopRequested("stopped by a signal after step 3")
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    os.kill(os.getpid(), signal.SIGINT)                 # nothing happens


def test_without_a_stop_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT)
    with PreemptionGuard():
        pass
    assert signal.getsignal(signal.SIGINT) is before


def test_a_completed_run_leaves_the_command_s_handler_and_a_failed_one_the_old_one():
    from dptrain.interrupts import _state, record_only, signal_received
    before = signal.getsignal(signal.SIGTERM)
    with PreemptionGuard(after_completion=record_only):
        pass
    assert signal.getsignal(signal.SIGTERM) is record_only
    try:
        os.kill(os.getpid(), signal.SIGTERM)            # noted, nothing raised
        assert signal_received() == signal.SIGTERM
    finally:
        _state["last"] = 0                              # no later test may see it
    signal.signal(signal.SIGTERM, before)
    with pytest.raises(RuntimeError):
        with PreemptionGuard(after_completion=record_only):
            raise RuntimeError("a failed run reports as before")
    assert signal.getsignal(signal.SIGTERM) is before
