"""The communicator and handle bases are abstract: a half-written transport fails at construction."""
import pytest

from dptrain.comm.base import Communicator, Handle
from dptrain.comm.local import LocalCommunicator


class NoGather(Communicator):
    """Everything but the gathers: what a transport written in a hurry looks like."""

    def allreduce(self, buf): pass
    def iallreduce(self, buf): pass
    def bcast(self, buf, root=0): pass
    def barrier(self): pass
    def allreduce_obj(self, obj): return obj
    def bcast_obj(self, obj, root=0): return obj
    def dup(self): return self


class NoTest(Handle):
    def wait(self): pass


def test_incomplete_communicator_fails_at_construction_naming_what_is_missing():
    with pytest.raises(TypeError) as err:
        NoGather()
    assert "allgather" in str(err.value) and "iallgather" in str(err.value)


def test_incomplete_handle_fails_at_construction():
    with pytest.raises(TypeError, match="test"):
        NoTest()


def test_the_bases_themselves_cannot_be_built():
    for base in (Communicator, Handle):
        with pytest.raises(TypeError):
            base()


def test_complete_transports_still_construct():
    c = LocalCommunicator()
    assert c.size == 1 and c.iallreduce(__import__("numpy").zeros(2)).test()
