"""Opening what a user names as input: data files, --weights, checkpoints, --config.

open() on a FIFO waits for a writer, and reading a FIFO or a device may never end, so a
FIFO given as a data file (or left in a checkpoint directory) hung the rank for ever. Every
input is opened without blocking and checked with fstat (no race between check and open):
anything but a regular file is refused, naming it. A --config may be a pipe (``<(...)``): it
is read within a bounded wait instead.
"""
from __future__ import annotations

import os
import select
import stat
import time

PIPE_WAIT_S = 10.0            # for the first bytes of a --config pipe


class NotRegularFile(OSError):
    """An input that is a FIFO, a device, a socket or a directory."""

    def __init__(self, path, mode: int):
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a directory" if stat.S_ISDIR(mode)
                else "a socket" if stat.S_ISSOCK(mode) else "a device")
        super().__init__(f"{path}: not a regular file ({kind}); give a file")
        self.path = path

    def __str__(self):
        return self.args[0]


def _open_nonblocking(path) -> tuple[int, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return fd, os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise


def open_input(path):
    """``path`` opened for reading in binary; NotRegularFile unless it is a regular file."""
    fd, st = _open_nonblocking(path)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise NotRegularFile(path, st.st_mode)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_config_bytes(path, max_bytes: int, wait_s: float = PIPE_WAIT_S) -> bytes:
    """A regular file's bytes, or a pipe's until its end, at most ``max_bytes`` + 1 of them
    (the caller refuses more: an endless writer is not read for ever); a pipe that gives
    nothing within ``wait_s`` (nobody writes it) is refused with a TimeoutError naming it."""
    fd, st = _open_nonblocking(path)
    try:
        if stat.S_ISREG(st.st_mode):
            os.set_blocking(fd, True)
            with os.fdopen(fd, "rb", closefd=False) as f:
                return f.read(max_bytes + 1)
        if not stat.S_ISFIFO(st.st_mode):
            raise NotRegularFile(path, st.st_mode)
        chunks, deadline = [], time.monotonic() + wait_s
        while sum(map(len, chunks)) <= max_bytes:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(left, 0))
            if not ready:
                raise TimeoutError(f"{path}: a pipe that gave nothing for {wait_s:g} s")
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            deadline = time.monotonic() + wait_s        # the writer is alive: keep reading
        return b"".join(chunks)
    finally:
        os.close(fd)
