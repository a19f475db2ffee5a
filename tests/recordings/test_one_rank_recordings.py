"""One process trains exactly as it did before the issue 22 redesign: every recorded run
(tests/recordings/combos.py) against its recording, within 1e-12 relative (bitwise with
DPTRAIN_RECORDINGS_BITWISE=1, on the machine that recorded)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import combos  # noqa: E402
import nccl_standin  # noqa: E402
from dptrain.comm.local import LocalCommunicator  # noqa: E402

RUNS = combos.one_rank()


@pytest.mark.parametrize("name", sorted(RUNS))
def test_one_rank_run_matches_its_recording(name, monkeypatch):
    run = RUNS[name]
    if run["transport"] == "nccl":
        from dptrain.comm.nccl import NCCLCommunicator
        nccl_standin.install(monkeypatch)
        comm = NCCLCommunicator(LocalCommunicator())
    else:
        comm = LocalCommunicator()
    state = combos.train(run, comm)
    if combos.RECORDING:
        combos.record(1, name, [state])
    else:
        combos.compare(1, name, state)
