"""2 and 4 ranks train exactly as they did before the issue 22 redesign: every recorded
run (tests/recordings/combos.py: schedule x transport stand-in x progress engine x model)
against its recording, within 1e-12 relative (bitwise with DPTRAIN_RECORDINGS_BITWISE=1,
on the machine that recorded)."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recordings"))
import combos  # noqa: E402
import nccl_standin  # noqa: E402
from dptrain import comm as comms  # noqa: E402
from dptrain.comm import order_check  # noqa: E402

RUNS = combos.several_ranks()


def communicator(transport: str, monkeypatch):
    world = order_check.checked(comms.create("mpi"), order_check.mode_from_env())
    if transport in ("mpi", "emulated"):          # emulated: the trainer wraps (--net-emulate)
        return world
    if transport == "nccl":
        from dptrain.comm.nccl import NCCLCommunicator
        nccl_standin.install(monkeypatch, mpi_comm=comms.create("mpi").comm.Dup())
        return NCCLCommunicator(world)
    if transport == "cuda-mpi":
        return comms.create("cuda-mpi")
    return comms.create(transport, inner=world)


@pytest.mark.mpi(min_size=2)
@pytest.mark.parametrize("name", sorted(RUNS))
def test_run_matches_its_recording(name, monkeypatch):
    run = RUNS[name]
    comm = communicator(run["transport"], monkeypatch)
    state = combos.train(run, comm)
    if not combos.RECORDING:
        combos.compare(comm.size, name, state, comm.rank)
        return
    states = [s for _, s in sorted(comm.allreduce_obj([(comm.rank, state)]))]
    if comm.rank == 0:
        combos.record(comm.size, name, states)
