"""Host staging keeps one pinned buffer per operation in flight (no GPU needed: a stand-in
device array and a communicator that reads its buffer only when waited on, as MPI may)."""
import numpy as np

from dptrain.comm.local import LocalCommunicator, _Complete
from dptrain.comm.staged import HostStagedCommunicator


class DeviceArray:
    """Enough of a CuPy array for staging: get(out=...), set(host), size/dtype/shape."""
    __module__ = "cupy._stand_in"

    def __init__(self, values):
        self.values = np.array(values, dtype=np.float64)
        self.size, self.dtype, self.shape = self.values.size, self.values.dtype, self.values.shape

    def ravel(self):
        return self

    def get(self, out):
        out[...] = self.values.reshape(-1)

    def set(self, host):
        self.values[...] = host.reshape(self.shape)


class LateSum(LocalCommunicator):
    """Two ranks holding the same values: the sum doubles them, read at completion."""

    def iallreduce(self, buf):
        done = _Complete()
        done.wait = lambda: buf.__imul__(2)
        return done


def test_two_reductions_of_one_size_in_flight_use_two_buffers():
    staged = HostStagedCommunicator(LateSum())
    a, b = DeviceArray([1.0, 2.0]), DeviceArray([10.0, 20.0])
    ha, hb = staged.iallreduce(a), staged.iallreduce(b)       # equal buckets, both in flight
    ha.wait()
    hb.wait()
    np.testing.assert_array_equal(a.values, [2.0, 4.0])
    np.testing.assert_array_equal(b.values, [20.0, 40.0])
    c = DeviceArray([5.0, 5.0])
    staged.iallreduce(c).wait()                                # buffers are reused, not regrown
    assert len(staged._free[(2, np.dtype(np.float64).str)]) == 2
    np.testing.assert_array_equal(c.values, [10.0, 10.0])
