"""Tears down the beds this process owns when it ends without leaving their `with` block:
at interpreter exit and on SIGTERM (a test runner's timeout, a CI job cancelled). SIGKILL
cannot be caught: the next bed's reaper (state.reap_stale) handles that."""
import atexit
import os
import signal
import threading

_live = {}              # bed id -> NetBed
_installed = {}


def watch(bed):
    _live[bed.id] = bed
    if _installed:
        return
    _installed["atexit"] = atexit.register(teardown_all)
    if threading.current_thread() is threading.main_thread():
        _installed["previous"] = signal.signal(signal.SIGTERM, _on_sigterm)


def forget(bed):
    _live.pop(bed.id, None)


def teardown_all():
    for bed in list(_live.values()):
        bed.down()


def _on_sigterm(signum, frame):
    teardown_all()
    previous = _installed.get("previous")
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    else:                       # the default action: die of SIGTERM, as without a bed
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
