"""Progress engines register by name; a half-written one is refused when declared."""
import argparse

import pytest

from dptrain.comm.local import LocalCommunicator
from dptrain.parallel import PROGRESS_MODES, engine
from dptrain.parallel.progress import CommThread, Poller
from dptrain.parallel.priority import PriorityCommThread
from dptrain.train import TrainConfig
from dptrain.train_flags import add_train_flags


class Eager(engine.ProgressEngine):
    def __init__(self, comm): self.comm = comm
    def submit(self, buf, priority=0): return self.comm.iallreduce(buf)
    def submit_gather(self, send, recv, priority=0): return self.comm.iallgather(send, recv)
    def poll(self): pass
    def close(self, wait=True): pass


@pytest.fixture
def eager():
    yield engine.register("eager")(Eager)
    engine.unregister("eager")


def test_the_built_in_engines_are_registered_in_order():
    assert tuple(PROGRESS_MODES) == ("auto", "thread", "poll", "priority")
    assert [engine._ENGINES[n] for n in ("thread", "poll", "priority")] == \
        [CommThread, Poller, PriorityCommThread]


def test_a_registered_engine_is_a_choice_everywhere(eager):
    assert "eager" in PROGRESS_MODES
    TrainConfig(model="mlp", comm_progress="eager").validate()
    p = argparse.ArgumentParser()
    add_train_flags(p, ["mlp"])
    assert "poll, thread, priority or eager" in " ".join(p.format_help().split())
    assert isinstance(engine.create("eager", LocalCommunicator()), Eager)


def test_an_incomplete_engine_is_refused_when_registered():
    class NoGather(engine.ProgressEngine):
        def submit(self, buf, priority=0): pass
        def poll(self): pass
        def close(self, wait=True): pass
    with pytest.raises(TypeError, match="submit_gather"):
        engine.register("broken")(NoGather)
    assert "broken" not in PROGRESS_MODES
