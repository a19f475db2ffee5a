"""The schedule defined only in tests/parallel/test_schedule_registry.py, registered by name,
runs on 2 and 4 ranks: every collective agreed (the strict order check), the parameters
those of blocking."""
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "parallel"))
from test_schedule_registry import ReduceThenUpdate, train  # noqa: E402
from dptrain import comm as comms  # noqa: E402
from dptrain.comm import order_check  # noqa: E402
from dptrain.parallel import schedules  # noqa: E402


def world():
    return order_check.checked(comms.create("mpi"), order_check.mode_from_env())


@pytest.mark.mpi(min_size=2)
def test_a_registered_schedule_runs_on_several_ranks():
    schedules.register(ReduceThenUpdate)
    try:
        got = train(ReduceThenUpdate.name, world())
    finally:
        schedules.unregister(ReduceThenUpdate.name)
    want = train("blocking", world())
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
