"""Deadlines over the phases no collective watchdog covers: MPI start, the start-up
agreements, and MPI finalize at the end, so that a rank frozen there (SIGSTOP, a hung file
system) ends the job instead of leaving the others waiting for ever.

The start-up deadline is --comm-timeout (with ``auto``, its generous limit: 300 s) plus twice
the time this rank itself took to get there (imports, MPI start, reading the data): every
rank loads the same data, so a peer may be slower, but one that needs more than twice as
long, and the limit more, is taken for stuck. The end deadline is that limit. Time this
process spent stopped does not count (comm/watchdog.py).
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager, nullcontext

STARTED = time.monotonic()            # this module is imported as the command starts
SAFETY_NET_S = 15.0                   # an abort that does not end this rank within this
_watch = {"dog": None}


def give_up(message: str) -> None:
    """Say why and end every rank with exit 3; before MPI is up, die of SIGKILL so that the
    launcher ends the others (they wait in MPI_Init, where MPI_Abort cannot reach them)."""
    from .last_words import end_job, say
    from .mpi_start import kill_this_rank, mpi_running
    net = threading.Timer(SAFETY_NET_S, kill_this_rank)
    net.daemon = True
    net.start()
    line = f"dptrain: failed: {message}"
    if mpi_running():
        end_job(line, 3)
    else:
        say(line)
    kill_this_rank()


def begin(comm_timeout, rank: int) -> None:
    """Watch the phases of this command (under an MPI launcher with several ranks only);
    ``comm_timeout``: the flag's value, when given (its generous limit bounds them)."""
    from .comm.timeout_policy import parse
    from .comm.watchdog import Watchdog
    from .errors import UsageError
    from .launch_env import launch_size, launched_under_mpi
    if _watch["dog"] is None and launched_under_mpi() and launch_size() > 1:
        try:
            policy = parse(comm_timeout)
        except UsageError:
            policy = parse("auto")       # reported by the agreed start-up, on every rank alike
        _watch["dog"] = Watchdog(policy, rank, on_expire=give_up, flag="--comm-timeout")


def start_up(what: str):
    """Bound a start-up wait by --comm-timeout + twice this rank's own start-up time."""
    dog = _watch["dog"]
    if dog is None:
        return nullcontext()
    took = time.monotonic() - STARTED
    return _guard(dog, f"start-up: {what}", round(dog.timeout_s + 2 * took, 1),
                  f"--comm-timeout {dog.timeout_s:g} s + twice this rank's {took:.1f} s start-up")


def end(what: str):
    dog = _watch["dog"]
    return nullcontext() if dog is None else _guard(dog, f"end of the run: {what}",
                                                    dog.timeout_s, "--comm-timeout")


@contextmanager
def _guard(dog, what, limit, why):
    dog.flag = why
    with dog.guard(what, timeout_s=limit):
        yield


def finish(comm, comm_timeout) -> None:
    """A barrier, then MPI_Finalize, each bounded by the run's --comm-timeout; then the watch
    stops. In the barrier MPI can still end every rank (exit 3) when one never comes; once
    finalizing it cannot, and this rank dies of SIGKILL, which the launcher sees."""
    from .mpi_start import finalize
    if _watch["dog"] is None:
        return
    from .comm.timeout_policy import parse
    _watch["dog"].policy = parse(comm_timeout)
    with end("the final barrier (a rank did not reach the end)"):
        comm.barrier()
    with end("MPI finalize"):
        finalize()
    if _watch["dog"] is not None:
        _watch["dog"].close()
        _watch["dog"] = None
