"""The collective-order checker in one process (the cross-rank cases are in tests/mpi)."""
import threading

import numpy as np
import pytest

from dptrain.comm import order_check
from dptrain.comm.local import LocalCommunicator
from dptrain.comm.order_check import CheckedCommunicator, Entry, labelled, parse_mode


def test_modes():
    assert parse_mode(None) == parse_mode("off") == parse_mode("0") == 0
    assert parse_mode("strict") == "strict" and parse_mode("25") == 25
    for bad in ("-1", "often", "1.5"):
        with pytest.raises(ValueError, match="off, strict or a positive number"):
            parse_mode(bad)


def test_records_name_operation_size_dtype_and_origin():
    c = CheckedCommunicator(LocalCommunicator(), 1)
    with labelled("allreduce of bucket 2"):
        c.allreduce(np.zeros(4, dtype=np.float32))
    c.bcast_obj({"a": 1})
    assert [str(e) for e in c.log.entries] == [
        "allreduce of 16 B float32 (allreduce of bucket 2)",
        "bcast_obj of 0 B - from root 0 (unlabelled)"]
    c.verify()                                   # one rank always agrees with itself
    assert c.log.base == 2 and c.log.entries == []


def test_origin_is_per_thread_and_restored():
    seen = []
    with labelled("outer"):
        with labelled("inner"):
            t = threading.Thread(target=lambda: seen.append(order_check.current_origin()))
            t.start()
            t.join()
            seen.append(order_check.current_origin())
        seen.append(order_check.current_origin())
    assert seen == [None, "inner", "outer"] and order_check.current_origin() is None


def test_fingerprints_depend_on_every_field():
    base = Entry("allreduce", 24, "float64", None, "step metrics")
    others = [Entry("iallreduce", 24, "float64", None, "step metrics"),
              Entry("allreduce", 16, "float64", None, "step metrics"),
              Entry("allreduce", 24, "float32", None, "step metrics"),
              Entry("allreduce", 24, "float64", 1, "step metrics"),
              Entry("allreduce", 24, "float64", None, "bucket 0")]
    assert len({e.digest(b"\0" * 8) for e in [base] + others}) == 6


def test_wrapping_is_idempotent_and_off_means_unwrapped():
    local = LocalCommunicator()
    assert order_check.checked(local, 0) is local
    c = order_check.checked(local, "strict")
    assert order_check.checked(c, "strict") is c and order_check.unchecked(c) is local


def test_the_trainer_reads_the_environment_and_the_flag(monkeypatch):
    from dptrain.errors import UsageError
    from dptrain.train import TrainConfig
    with pytest.raises(UsageError, match="--check-collectives 'sometimes'"):
        TrainConfig(check_collectives="sometimes").validate()
    monkeypatch.setenv(order_check.ENV, "strict")
    assert order_check.mode_from_env() == "strict"
