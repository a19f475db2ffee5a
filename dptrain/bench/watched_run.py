"""One benchmark process watched to its end: its output relayed line by line as it comes, a
deadline after which its whole process group is killed (mpiexec and its ranks, or
torch.multiprocessing's workers with it), and the wall time from start to exit."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Finished:
    returncode: int
    wall_s: float
    stdout: list[str] = field(default_factory=list)
    stderr: str = ""
    timed_out: bool = False

    def why(self) -> str:
        """The reason a failed run gives: its last line of errors, or the deadline."""
        if self.timed_out:
            return "ran past its deadline and was killed"
        lines = [x for x in self.stderr.strip().splitlines() if x.strip()]
        return lines[-1] if lines else f"exit status {self.returncode}"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def run_watched(cmd: list[str], env: dict, deadline_s: float, on_line=None) -> Finished:
    """Run ``cmd`` in a session of its own; ``on_line(text)`` sees each stdout line as it
    arrives. Whatever happens here (the deadline, an interrupt), no process is left behind."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True, start_new_session=True)
    timer = threading.Timer(deadline_s, _kill_group, args=(proc,))
    timer.start()
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.append(proc.stderr.read()), daemon=True)
    reader.start()
    out = []
    try:
        for line in proc.stdout:
            out.append(line.rstrip("\n"))
            if on_line is not None:
                on_line(out[-1])
        proc.wait()
    finally:
        timed_out = not timer.is_alive() and proc.returncode is not None and proc.returncode < 0
        timer.cancel()
        _kill_group(proc)              # stray children of a finished or interrupted run
        proc.wait()
        reader.join(timeout=5)
    return Finished(proc.returncode, time.perf_counter() - t0, out, "".join(err),
                    timed_out=timed_out)
