"""Processes of a case: every pid it started (its session and their descendants), found in /proc,
so a hung case is killed whole, mpiexec and hydra proxies included."""
from __future__ import annotations

import os
import signal
from pathlib import Path


def _stat(pid: int) -> tuple[int, int, int] | None:
    """(ppid, session, start time) of pid, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[3]), int(fields[19])


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Tracker:
    """Remembers every process of the given sessions and their descendants, by (pid, start
    time), so a recycled pid is never killed."""

    def __init__(self) -> None:
        self.roots: set[int] = set()
        self.seen: dict[int, int] = {}

    def add_root(self, pid: int) -> None:
        self.roots.add(pid)
        st = _stat(pid)
        if st:
            self.seen[pid] = st[2]

    def poll(self) -> None:
        table = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                st = _stat(int(entry))
                if st:
                    table[int(entry)] = st
        mine = set(self.seen) | self.roots
        changed = True
        while changed:
            changed = False
            for pid, (ppid, sid, start) in table.items():
                if pid not in mine and (ppid in mine or sid in self.roots):
                    mine.add(pid)
                    self.seen[pid] = start
                    changed = True

    def alive(self) -> list[int]:
        return [pid for pid, start in self.seen.items()
                if (st := _stat(pid)) and st[2] == start and _comm(pid) != ""
                and not _zombie(pid)]

    def rank_pid(self, rank: int) -> int | None:
        """The rank process: a child of hydra_pmi_proxy whose PMI_RANK is rank."""
        self.poll()
        for pid in self.alive():
            st = _stat(pid)
            if not st or _comm(st[0]) != "hydra_pmi_proxy":
                continue
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"PMI_RANK={rank}".encode() in env:
                return pid
        return None

    def mpiexec_pid(self) -> int | None:
        self.poll()
        for pid in self.alive():
            if _comm(pid).startswith("mpiexec"):
                return pid
        return None

    def signal_all(self, sig: int) -> None:
        for pid in self.alive():
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def kill_all(self) -> None:
        """SIGKILL the sessions and every remembered process still alive."""
        for root in self.roots:
            try:
                os.killpg(root, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.poll()
        self.signal_all(signal.SIGKILL)


def _zombie(pid: int) -> bool:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return text[text.rindex(")") + 2] == "Z"
