"""How a rank that has to end the whole job says why before it does.

MPI_Abort makes the launcher kill every rank at once. Whatever a rank wrote to stderr that
the launcher has not yet read from the rank's pipe dies with it, and under load that is
often the one line saying what went wrong. So the reason goes out as a single write(2) of
one line, the rank waits (a few seconds at most) until the launcher has read that line from
the pipe, and only then aborts. A launcher forwards what it read before it handles the abort
notice, which is sent after.
"""
from __future__ import annotations

import array
import fcntl
import os
import stat
import sys
import termios
import time

DRAIN_TIMEOUT_S = 5.0
# once read, the launcher may still be passing the line on (to mpiexec, over a socket)
FORWARD_GRACE_S = 0.2


def unread_bytes(fd: int) -> int | None:
    """Bytes written to ``fd`` that its reader has not taken yet; None when ``fd`` is not a
    pipe or socket (a terminal or a file keeps what it is given)."""
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            request = termios.FIONREAD          # on either end of a Linux pipe
        elif stat.S_ISSOCK(mode):
            request = termios.TIOCOUTQ          # SIOCOUTQ: queued, not yet taken by the peer
        else:
            return None
        count = array.array("i", [0])
        fcntl.ioctl(fd, request, count, True)
        return count[0]
    except OSError:
        return None


def write_line(line: str, fd: int = 2) -> None:
    """``line`` and a newline in one write (atomic on a pipe up to 4 KiB), after anything
    Python still buffers for stderr."""
    try:
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    data = (line.rstrip("\n") + "\n").encode("utf-8", "replace")
    while data:
        try:
            data = data[os.write(fd, data):]
        except InterruptedError:
            continue
        except OSError:
            return                               # nobody is reading: nothing more to do


def wait_until_read(fd: int = 2, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
    """True once the reader of ``fd`` has taken everything written to it (or it is not a
    pipe); False if ``timeout_s`` passed first."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = unread_bytes(fd)
        if not left:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)


def say(line: str, fd: int = 2) -> None:
    """Write one line to stderr and wait until whoever forwards stderr has it."""
    write_line(line, fd)
    if unread_bytes(fd) is not None:
        wait_until_read(fd)
        time.sleep(FORWARD_GRACE_S)


def end_job(line: str, code: int, detail: str | None = None) -> None:
    """Say ``line`` (after ``detail``, a traceback, if given) and end every rank of the MPI
    job with exit ``code``. Returns only when there is no MPI job to end (one process)."""
    from .launch_env import abort_world
    if detail:
        write_line(detail.rstrip("\n"))
    say(line)
    abort_world(code)
