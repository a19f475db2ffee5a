"""Kind 8: first-hour rough edges (abbreviations, messages, a second SIGTERM)."""
from __future__ import annotations

import signal

from .case import DPTRAIN, ERROR_LINE, TINY, Action, Case, mpi, train

LONG = [*TINY, "--max-steps", "1000000", "--log-every", "1", "--metrics-out", "m.jsonl"]


def cases() -> list[Case]:
    return [
        Case("flag-abbreviation-epoch", 8, train(*TINY, "--epoch", "2"), rc=2,
             stderr=ERROR_LINE + r".*--epoch.*did you mean --epochs"),
        Case("flag-abbreviation-epoch-2ranks", 8, mpi(2, *TINY, "--epoch", "2"), rc=2,
             stderr=ERROR_LINE + r".*--epoch.*did you mean --epochs"),
        Case("flag-abbreviation-eval", 8, [DPTRAIN, "eval", "--model", "mlp", "--weight",
                                           "w.npz"], rc=2,
             stderr=ERROR_LINE + r".*--weight\b.*did you mean --weights"),
        # The same with --weights also given: only the abbreviation is wrong.
        Case("flag-abbreviation-eval-batch", 8, [DPTRAIN, "eval", "--model", "mlp", "--weights",
                                                 "w.npz", "--batch", "4"], rc=2,
             stderr=ERROR_LINE + r".*--batch\b.*did you mean --batch-size"),
        Case("model-name-typo", 8, train("--model", "mpl", "--max-steps", "1"), rc=2,
             stderr=ERROR_LINE + r".*mpl.*did you mean mlp"),
        Case("summary-without-model", 8, [DPTRAIN, "summary"], rc=2,
             stderr=r"^dptrain: error: (?!.*dptrain: )"),
        Case("sigterm-once-stops-cleanly", 8, train(*LONG), rc=0,
             stderr=r"stopped by a signal", deadline=30,
             action=Action(signal=signal.SIGTERM, target="job", when_file="m.jsonl",
                           when_text=r"(.*\n){3}")),
        Case("sigterm-twice-exits-143", 8,
             train(*TINY, "--max-steps", "50", "--checkpoint-dir", "ck",
                   "--log-every", "1", "--metrics-out", "m.jsonl"),
             env={"DPTRAIN_FAULT": "stall:0:5"}, rc=143, deadline=30,
             action=Action(signal=signal.SIGTERM, target="job", when_file="m.jsonl",
                           when_text=r"(.*\n){3}", repeat_signal_after=1.5)),
        Case("sigterm-twice-2ranks-exits-143", 8,
             mpi(2, *TINY, "--max-steps", "50", "--checkpoint-dir", "ck", "--log-every", "1",
                 "--metrics-out", "m.jsonl"),
             env={"DPTRAIN_FAULT": "stall:0:5"}, rc=143, deadline=30,
             action=Action(signal=signal.SIGTERM, target="mpiexec", when_file="m.jsonl",
                           when_text=r"(.*\n){3}", repeat_signal_after=1.5)),
        Case("bogus-flag", 8, train("--bogus"), rc=2, stderr=ERROR_LINE + r".*--bogus"),
    ]
