"""A throw-away single-node Slurm (Debian's slurm-wlm + munge), as ../shared/slurm/README.md
records it for this kind of machine: config and state under one scratch folder."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONF = """ClusterName=local
SlurmctldHost={host}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmdSpoolDir={d}/spool
StateSaveLocation={d}/state
SlurmctldLogFile={d}/log/ctld.log
SlurmdLogFile={d}/log/d.log
SlurmUser=root
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
SlurmctldPort=6917
SlurmdPort=6918
NodeName={host} CPUs={cpus} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def ensure_installed() -> str | None:
    """None when slurmctld, slurmd, munged and sbatch are available; else why not. Nothing is
    installed here: `make test` installs nothing outside the project, so the Slurm packages
    come from `make test-slurm` (or CI's .ci/run), which runs scripts/install-slurm.sh."""
    missing = [t for t in ("slurmctld", "slurmd", "munged", "sbatch") if not shutil.which(t)]
    if missing:
        return (f"Slurm is not installed ({', '.join(missing)} missing): `make test-slurm` "
                "installs Debian's slurm-wlm and munge (as root) and runs this test")
    return None


class SlurmCluster:
    def __init__(self, workdir: Path):
        self.dir = Path(workdir)
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.dir / "slurm.conf"
        self.env = dict(os.environ, SLURM_CONF=str(self.conf))
        self._munged = None

    def start(self) -> None:
        for sub in ("spool", "state", "log"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(CONF.format(host=self.host, d=self.dir, cpus=os.cpu_count() or 1))
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            _run(["mungekey", "-c"])
        shutil.chown(key, "munge", "munge")
        key.chmod(0o400)
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        if _run(["pgrep", "-x", "munged"]).returncode != 0:
            _run(["su", "-s", "/bin/sh", "munge", "-c", "/usr/sbin/munged"])
            self._munged = True
        for daemon in ("slurmctld", "slurmd"):
            res = _run([daemon, "-f", str(self.conf)], env=self.env)
            if res.returncode != 0:
                raise RuntimeError(f"{daemon} failed: {res.stderr.strip()}")
        deadline = time.time() + 60
        while time.time() < deadline:
            state = _run(["sinfo", "-h", "-o", "%t"], env=self.env).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                return
            time.sleep(1)
        raise RuntimeError(f"the Slurm node never became idle (sinfo: {state!r}); "
                           f"log: {(self.dir / 'log' / 'd.log').read_text()[-500:]}")

    def sbatch(self, script: str, *args, cwd=None) -> str:
        res = _run(["sbatch", "--parsable", script, *map(str, args)], env=self.env, cwd=cwd)
        if res.returncode != 0:
            raise RuntimeError(f"sbatch failed: {res.stderr.strip()}")
        return res.stdout.strip().split(";")[0]

    def wait(self, job: str, timeout: float = 300) -> str:
        """The job's final state (COMPLETED, FAILED, ...)."""
        deadline = time.time() + timeout
        state = "UNKNOWN"
        while time.time() < deadline:
            out = _run(["scontrol", "show", "job", job], env=self.env).stdout
            for field in out.split():
                if field.startswith("JobState="):
                    state = field.split("=", 1)[1]
            if state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
                return state
            time.sleep(1)
        _run(["scancel", job], env=self.env)
        return f"TIMEOUT waiting (last state {state})"

    def stop(self) -> None:
        for pidfile in ("slurmd.pid", "slurmctld.pid"):
            path = self.dir / pidfile
            if path.exists():
                try:
                    os.kill(int(path.read_text().strip()), signal.SIGTERM)
                except (ValueError, ProcessLookupError):
                    pass
        if self._munged:
            _run(["pkill", "-x", "munged"])
