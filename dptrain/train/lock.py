"""One run per checkpoint directory and per output file: a lock file naming its owner.

Two runs writing checkpoints into one directory would overwrite and prune each other's
files. Rank 0 takes ``DIR/.dptrain.lock`` (created with O_EXCL, so only one process can) and
writes its pid, host, process start time and command into it. A second run is refused with
the owner named. A lock whose owner is gone (same host, no such process, or a new process
under a reused pid) was left by a killed run: it is taken over with a warning. A lock from
another host cannot be checked, so it is refused with the file to remove by hand.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from pathlib import Path

from ..errors import UsageError

LOCK_NAME = ".dptrain.lock"


MAX_LOCK_BYTES = 64 * 1024          # what _me() writes is a few hundred bytes
MAX_PID = 1 << 22                   # the kernel's pid_max is at most 2^22


def _text(value, limit: int = 200) -> str:
    """A field of the lock shown on the error's one line: printable, bounded."""
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= limit else text[:limit - 3] + "..."


def parse_owner(raw: bytes) -> dict | None:
    """The lock's owner from its bytes, or None when they are not what _me() writes (empty,
    cut by a killed writer, too long, not JSON, fields of the wrong type or range)."""
    if len(raw) > MAX_LOCK_BYTES:
        return None
    try:
        owner = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError):          # UnicodeDecodeError is a ValueError
        return None
    if not isinstance(owner, dict):
        return None
    pid, host, start = owner.get("pid"), owner.get("host"), owner.get("start")
    if not (isinstance(pid, int) and not isinstance(pid, bool) and 0 < pid < MAX_PID
            and isinstance(host, str) and (start is None or isinstance(start, str))):
        return None
    return {"pid": pid, "host": host, "start": start, "started": _text(owner.get("started")),
            "command": _text(owner.get("command"))}


def _start_time(pid: int) -> str | None:
    """The kernel's start time of a process (clock ticks since boot), to tell pid reuse apart."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _ended(pid: int) -> bool:
    """A zombie: the process has exited and only waits for its parent to collect it (a rank
    ended by MPI_Abort can linger so for a while after mpiexec returned)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return False


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid()),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}


def owner_alive(owner: dict) -> bool:
    """False only when the owner surely is gone; an owner on another host counts as alive."""
    if owner.get("host") != socket.gethostname():
        return True
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass                                   # someone else's live process
    if _ended(pid):
        return False
    start = _start_time(pid)
    return owner.get("start") is None or start is None or start == owner.get("start")


class DirectoryLock:
    def __init__(self, directory, flag: str = "--checkpoint-dir"):
        self.directory = Path(directory)
        self.target = self.directory               # what the lock guards, for messages
        self.path = self.directory / LOCK_NAME
        self.flag = flag
        self.held = False

    def _owner(self) -> dict | None:
        """The owner the lock names; {} when it is gone meanwhile, None when it is garbled."""
        try:
            # non-blocking: a FIFO put there must not hang the start-up (it is refused below)
            with os.fdopen(os.open(self.path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
                if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                    raise UsageError(f"{self.flag} {self.directory}: {self.path} is not a lock "
                                     "file (not a regular file); remove it")
                return parse_owner(f.read(MAX_LOCK_BYTES + 1))
        except FileNotFoundError:
            return {}                          # released meanwhile: try again
        except IsADirectoryError:
            raise UsageError(f"{self.flag} {self.directory}: {self.path} is a directory, not a "
                             "lock file; remove it") from None
        except OSError:
            return None

    def _refuse(self, owner: dict):
        raise UsageError(
            f"{self.flag} {self.target} is in use by pid {owner.get('pid')} on "
            f"{_text(owner.get('host'))} (since {owner.get('started')}: {owner.get('command')}); "
            f"give another {'directory' if self.target == self.directory else 'file'}, or "
            f"remove {self.path} if that run is gone")

    def check_free(self) -> None:
        """Refuse now, naming the owner, a directory another live process holds (acquire()
        comes at the end of the start-up; this lets other checks be reported after it)."""
        owner = self._owner()
        if owner and (owner.get("pid"), owner.get("host")) != (os.getpid(), socket.gethostname()) \
                and owner_alive(owner):
            self._refuse(owner)

    def acquire(self, warn=lambda message: None) -> "DirectoryLock":
        me = _me()
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"{self.flag} {self.directory}: cannot create ({exc.strerror})") from None
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner == {}:
                    continue
                if owner is not None and owner.get("pid") == me["pid"] and owner.get("host") == me["host"]:
                    self.held = True           # this process already holds it (a second Trainer)
                    return self
                if owner is not None and owner_alive(owner):
                    self._refuse(owner)
                who = (f"pid {owner.get('pid')} on {_text(owner.get('host'))}" if owner
                       else "an unreadable lock")
                warn(f"dptrain: warning: {self.flag} {self.target}: taking over the lock of "
                     f"{who}, which is no longer running")
                self.path.unlink(missing_ok=True)
                continue
            except OSError as exc:
                raise UsageError(f"{self.flag} {self.target}: cannot create the lock file "
                                 f"{self.path} ({exc.strerror})") from None
            with os.fdopen(fd, "w") as f:
                json.dump(me, f)
            self.held = True
            return self
        raise UsageError(f"{self.flag} {self.target}: could not take the lock {self.path}")

    def release(self) -> None:
        if not self.held:
            return
        self.held = False
        owner = self._owner()
        if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
            try:
                self.path.unlink(missing_ok=True)
            except OSError as exc:
                # a directory that became read-only: whatever failed in it was reported
                # already; the next run takes this stale lock over
                print(f"dptrain: warning: cannot remove the lock {self.path} ({exc.strerror}); "
                      "the next run will take it over", file=sys.stderr)


class OutputLock(DirectoryLock):
    """The same lock for an output file (--metrics-out, --trace, --save-weights): a hidden
    ``.<name>.dptrain-lock`` beside it, so that two live runs never write one file (their
    metrics lines interleaved, one trace or weights file overwriting the other's)."""

    def __init__(self, path, flag: str):
        super().__init__(Path(os.path.abspath(path)).parent, flag)
        self.target = Path(path)
        self.path = self.directory / f".{self.target.name}.dptrain-lock"


class Locks:
    """Every lock a run holds, released together."""

    def __init__(self):
        self.held: list[DirectoryLock] = []

    def take(self, lock: DirectoryLock, warn) -> None:
        try:
            self.held.append(lock.acquire(warn))
        except BaseException:
            self.release()                     # a refusal leaves none of this run's locks
            raise

    def release(self) -> None:
        while self.held:
            self.held.pop().release()
