"""Kinds 2 and 3: a rank frozen or signalled at any phase ends the job in time (exit 3, 143 or
2 for a FIFO input); a pause of the whole job is not a failure (exit 0)."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from .case import DPTRAIN, ERROR_LINE, TINY, Action, Case, mpi, train
from .fixtures import make_checkpoints, write_mnist

TIMEOUT = ["--comm-timeout", "3"]
LONG = [*TINY, "--max-steps", "1000000", "--log-every", "1", "--metrics-out", "m.jsonl"]
# Training has begun once the metrics file holds a few step lines.
TRAINING = dict(when_file="m.jsonl", when_text=r"(.*\n){3}")
FAILED = r"(?m)^dptrain: (training failed|rank \d+ failed|error)"


def _stopped_at(phase: str, rank: int, n: int) -> Case:
    # Before MPI is up MPI_Abort cannot reach the job: the waiting rank SIGKILLs itself and
    # MPICH's mpiexec exits 9 (docs/errors.md); later phases abort with exit 3.
    return Case(f"freeze{n}-rank{rank}-at-{phase}", 2,
                mpi(n, *TINY, "--max-steps", "3", *TIMEOUT),
                env={"DPTRAIN_FAULT": f"stop:{rank}:{phase}"}, rc=9 if phase == "start" else 3,
                stderr=r"(?m)^dptrain: (training )?failed", deadline=40)


def _signal_rank(name, sig, rank, n, rc, stderr=None, deadline=40, **when) -> Case:
    return Case(name, 2, mpi(n, *LONG, *TIMEOUT), rc=rc, stderr=stderr, deadline=deadline,
                action=Action(signal=sig, target=f"rank:{rank}", **(when or TRAINING)))


def _fifo(name: str, make, argv, says: str = "not a regular file") -> Case:
    return Case(name, 2, argv, rc=2, stderr=ERROR_LINE + ".*" + says, setup=make, deadline=30)


def _mkfifo(rel: str):
    def make(tmp: Path) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(tmp / rel)
    return make


def _mnist_fifo(tmp: Path) -> None:
    write_mnist(tmp / "mn")
    (tmp / "mn" / "train-images-idx3-ubyte").unlink()
    os.mkfifo(tmp / "mn" / "train-images-idx3-ubyte")


def _fifo_checkpoint(tmp: Path) -> None:
    make_checkpoints(tmp, steps=2, every=2)
    os.mkfifo(tmp / "ck" / "ckpt-000000009.npz")


def fifo_cases() -> list[Case]:
    mnist = ["--model", "mlp", "--dataset", "mnist:mn", "--batch-size", "8", "--max-steps", "2",
             "--quiet"]
    resume = [*TINY, "--max-steps", "4", "--checkpoint-dir", "ck", "--resume"]
    out = []
    for n, run in ((1, lambda *a: train(*a)), (2, lambda *a: mpi(2, *a))):
        out += [
            _fifo(f"fifo{n}-npz", _mkfifo("d.npz"),
                  run("--model", "mlp", "--dataset", "npz:d.npz", "--max-steps", "2")),
            _fifo(f"fifo{n}-idx", _mnist_fifo, run(*mnist)),
            _fifo(f"fifo{n}-newest-checkpoint", _fifo_checkpoint, run(*resume)),
            _fifo(f"fifo{n}-config-no-writer", _mkfifo("c.toml"),
                  run(*TINY, "--max-steps", "2", "--config", "c.toml"), says="--config"),
        ]
    out.append(_fifo("fifo1-eval-weights", _mkfifo("w.npz"),
                     [DPTRAIN, "eval", "--model", "mlp", "--weights", "w.npz",
                      "--dataset", "synthetic:1x8x8:200"]))
    return out


def cases() -> list[Case]:
    out = [_stopped_at(phase, rank, n) for phase in ("start", "setup", "end")
           for rank, n in ((1, 2), (0, 2), (3, 4))]
    out += [
        _signal_rank("sigstop2-rank1-training", signal.SIGSTOP, 1, 2, 3, FAILED),
        _signal_rank("sigstop4-rank2-training", signal.SIGSTOP, 2, 4, 3, FAILED),
        # A SIGKILLed rank prints nothing; mpiexec ends the others and exits non-zero (9, or
        # 143 when a survivor saw the MPI error first): docs/errors.md promises only that.
        _signal_rank("sigkill2-rank1-training", signal.SIGKILL, 1, 2, set(range(1, 256))),
        _signal_rank("sigkill4-rank0-training", signal.SIGKILL, 0, 4, set(range(1, 256))),
        # One rank's SIGTERM as it starts (imports, MPI start): the whole job ends, 143.
        Case("sigterm2-rank1-start-up", 2, mpi(2, *LONG, *TIMEOUT), rc={143}, deadline=40,
             action=Action(after=0.4, signal=signal.SIGTERM, target="rank:1")),
        # SIGTERM (as `timeout` sends) to mpiexec while a rank is frozen before the agreement.
        Case("sigterm2-mpiexec-rank-frozen", 2,
             mpi(2, *TINY, "--max-steps", "3", "--comm-timeout", "60"),
             env={"DPTRAIN_FAULT": "stop:1:setup"}, rc={143}, deadline=30,
             action=Action(after=3, signal=signal.SIGTERM, target="mpiexec")),
        # ... or while rank 1 sleeps inside training and rank 0 waits in a collective: the
        # first SIGTERM asks for a clean stop after the step, which never ends; the watchdog
        # (--comm-timeout 5) must still end the job.
        Case("sigterm2-mpiexec-rank-stalled-training", 2,
             mpi(2, *TINY, "--max-steps", "50", "--comm-timeout", "5"),
             env={"DPTRAIN_FAULT": "stall:1:5"}, rc={3, 143}, deadline=35,
             action=Action(after=4, signal=signal.SIGTERM, target="mpiexec")),
    ]
    out += fifo_cases()
    out += pause_cases()
    return out


def pause_cases() -> list[Case]:
    """Kind 3: SIGSTOP every process of the job for twice --comm-timeout, then SIGCONT."""
    steps = [*TINY, "--max-steps", "800", "--log-every", "1", "--metrics-out", "m.jsonl",
             *TIMEOUT]
    out = []
    for n in (1, 2, 4):
        out.append(Case(f"pause{n}-job-training", 3, mpi(n, *steps), rc=0, deadline=90,
                        action=Action(signal=signal.SIGSTOP, target="job", resume_after=7,
                                      **TRAINING)))
    out.append(Case("pause2-job-start-up", 3, mpi(2, *steps), rc=0, deadline=90,
                    action=Action(after=0.5, signal=signal.SIGSTOP, target="job",
                                  resume_after=7)))
    return out
