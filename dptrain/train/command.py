"""One training run as ``dptrain train`` runs it, for the command line and for dptrain.fit.

Both callers hand in a function that builds the TrainConfig (from flags and --config, or from
keyword options): it runs on every rank inside the agreed start-up, so a bad option is exit 2
on every rank alike. What a failure becomes (one line, an exit code) is decided by the
caller's cli.run_reported.
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

from .. import last_words
from ..launch_env import launch_rank


@dataclass
class Finished:
    """What a finished run leaves: the trainer (its config, position and model) and the
    last epoch's numbers; ``stopped`` is the line a stop by a signal printed, else None."""
    trainer: object
    result: dict
    stopped: str | None


def run_training(make_config, comm_timeout: float | None, *,
                 then_ignore_signals: bool = False) -> Finished:
    """Start MPI, agree on ``make_config()``'s TrainConfig, train, end every phase bounded.
    ``comm_timeout`` bounds the start-up before the configuration is known (the flag's value,
    when given). ``then_ignore_signals`` (the command, which only exits after this; never the
    API, whose caller goes on): once the run is complete, a SIGTERM or SIGINT stops nothing
    (interrupts.record_only; a rank stuck in the final barrier is still ended by the
    watcher), and once MPI is finalized both are ignored."""
    from .. import comm as comms, phase_watch
    from ..interrupts import Watcher, deferred, ignore_from_now, patient, record_only
    from . import faults, startup
    from .preemption import StopRequested
    from .trainer import Trainer
    rank = launch_rank()
    # Every phase is bounded (phase_watch.py), and a signal the main thread cannot act on,
    # blocked in MPI, still ends the job (interrupts.py).
    with Watcher(rank):
        phase_watch.begin(comm_timeout, rank)
        faults.at_phase("start", rank)
        with phase_watch.start_up("MPI initialisation (a rank did not reach it)"), deferred():
            world = comms.default()

        def setup():
            faults.at_phase("setup", rank)
            return make_config()
        trainer = Trainer(startup.agree(world, setup), world)
        result, stopped = {}, None
        try:
            result = trainer.run(record_only if then_ignore_signals else None)
        except StopRequested as stop:
            stopped = f"dptrain: {stop}"
            if trainer.is_root:            # a second signal may abort the job right after this
                last_words.say(stopped)
        faults.at_phase("end", rank)
        # the run complete, a first signal while this rank waits in the (bounded) final
        # barrier for a slower one is waited out, not taken for a stuck job
        with patient() if then_ignore_signals and stopped is None else nullcontext():
            phase_watch.finish(world, trainer.cfg.comm_timeout)
        if then_ignore_signals:
            ignore_from_now()
            faults.at_phase("exit", rank)
    return Finished(trainer, result, stopped)
