"""How ``dptrain bench --ranks`` starts its multi-rank runs: its own ``mpiexec`` on this host,
or the user's launcher across hosts (``--launcher "mpiexec -f hosts -ppn 2"``, ``--launcher
srun``, ``--hostfile FILE`` = MPICH's ``mpiexec -f FILE``).

The launcher string is split with shlex and run without a shell; the bench appends ``-n P``
(the rank count of the row) and then the worker's command, which both mpiexec (MPICH, Open
MPI) and srun read as the number of processes. A launcher that takes the count some other
way is wrapped in a script that reads ``-n P`` as its first two arguments.
"""
from __future__ import annotations

import os
import shlex
import shutil

from ..errors import UsageError

COUNT_FLAGS = ("-n", "-np", "--np", "--ntasks")


class Launcher:
    """The command prefix of a P-rank run. ``own`` is True for the bench's own mpiexec
    (which may bind ranks to cores of this host); a user's launcher places ranks itself."""

    def __init__(self, argv: list[str], own: bool):
        self.argv, self.own = argv, own

    def command(self, n: int, bind: bool = False) -> list[str]:
        return [*self.argv, *(["-bind-to", "core"] if bind and self.own else []), "-n", str(n)]


def _own_mpiexec() -> str:
    from ..launch_env import find_mpiexec
    found = find_mpiexec()
    if not found:
        raise UsageError("bench --ranks needs mpiexec (pip install mpich)")
    return found


def _check_program(argv: list[str], flag: str, text: str) -> None:
    program = argv[0]
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise UsageError(f"{flag} {text!r}: {program} is not an executable file")
    elif shutil.which(program) is None:
        raise UsageError(f"{flag} {text!r}: {program} not found on PATH")


def parse_launcher(launcher: str | None, hostfile: str | None) -> Launcher | None:
    """The user's launcher, checked before any run (None: neither flag given)."""
    if launcher is not None and hostfile is not None:
        raise UsageError("--launcher and --hostfile: give one (--hostfile F is --launcher "
                         "\"mpiexec -f F\")")
    if hostfile is not None:
        if not os.path.isfile(hostfile):
            raise UsageError(f"--hostfile {hostfile}: no such file")
        return Launcher([_own_mpiexec(), "-f", hostfile], own=False)
    if launcher is None:
        return None
    try:
        argv = shlex.split(launcher)
    except ValueError as e:
        raise UsageError(f"--launcher {launcher!r}: cannot be split into words ({e})") from None
    if not argv:
        raise UsageError("--launcher is empty: give a command such as \"mpiexec -f hosts\" or srun")
    _check_program(argv, "--launcher", launcher)
    count = [w for w in argv[1:] if w.split("=")[0] in COUNT_FLAGS]
    if count:
        raise UsageError(f"--launcher {launcher!r}: leave out {count[0].split('=')[0]}; the bench "
                         "appends -n P for each rank count of --ranks")
    return Launcher(argv, own=False)


def local_launcher() -> Launcher:
    """The bench's own mpiexec, on this host (the 1-rank baseline, and --ranks without a launcher)."""
    return Launcher([_own_mpiexec()], own=True)
