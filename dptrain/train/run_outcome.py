"""How a run's failure leaves the trainer, and what is closed on the way out.

- the ranks posted different collectives (CollectiveOrderError): nothing more may be posted,
  so what is in flight is abandoned rather than waited for;
- a failure or stop every rank agreed on: the step-metrics reduction still in flight is
  completed, so MPI finalises cleanly (the others end the job with MPI_Abort anyway);
- bad input found after the start-up: only this rank can know it (on_this_rank_only);
- anything else raised here is this rank's alone: RankFailure, which ends the job.
Either way the data parallelism (flushed only after a success), the watchdog and the output
lock are closed."""
from __future__ import annotations

from ..comm import order_check
from ..errors import RankFailure, TrainingFailure, UsageError, on_this_rank_only
from .preemption import StopRequested


class RunOutcome:
    def __init__(self, rank: int, step_now, drain, close):
        """``step_now()``: the step reached; ``drain()`` completes the metrics in flight;
        ``close(ok, abandon)`` closes what the run holds."""
        self.rank, self.step_now, self.drain, self.close = rank, step_now, drain, close

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        disagreed = kind is not None and issubclass(kind, order_check.CollectiveOrderError)
        try:
            if kind is None or disagreed or issubclass(kind, (KeyboardInterrupt, OSError)):
                return False
            if issubclass(kind, (TrainingFailure, StopRequested)):
                if not getattr(exc, "local", False):
                    self.drain()
                return False
            if issubclass(kind, UsageError):
                raise on_this_rank_only(exc)
            if issubclass(kind, Exception):
                raise RankFailure(self.rank, self.step_now(), exc) from exc
            return False
        finally:
            self.close(kind is None, disagreed)
