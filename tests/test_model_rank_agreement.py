"""A model of the user's own that differs between ranks (a builder that reads the rank, a model
file that differs between nodes) ends the job at start-up with exit 2 and one line, on every
rank, within a deadline: never a sum of mismatched gradients, never a hang. The ranks compare
the structural fingerprint (models/structure.py) of the model each one built."""
import textwrap

import pytest

from test_agreed_startup import mpirun_within
from test_rank_agreement import MPIEXEC, mpmd_within

pytestmark = pytest.mark.skipif(not __import__("os").path.exists(MPIEXEC),
                                reason="no mpiexec beside the Python")
DEADLINE_S = 30
MODEL = """
    import math
    import os
    from dptrain import nn


    def net(input_shape, num_classes):
        width = {width}
        return [nn.Flatten(), nn.Dense(math.prod(input_shape), width), nn.ReLU(),
                nn.Dense(width, num_classes)]
"""
# a long --comm-timeout: only the start-up agreement can end these jobs in time
TRAIN = ["train", "--model", "model.py:net", "--dataset", "synthetic:1x8x8:64",
         "--batch-size", 16, "--max-steps", 2, "--quiet", "--comm-timeout", 300]


def model_file(directory, width="16", text=MODEL):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.py").write_text(textwrap.dedent(text).replace("{width}", width))
    return directory


def assert_one_line(code, lines, *named):
    assert code == 2, lines
    assert len(lines) == 1 and lines[0].startswith("dptrain: error: "), lines
    for text in named:
        assert text in lines[0], lines


def test_a_builder_that_reads_the_rank_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(model_file(tmp_path, width="8 + 8 * int(os.environ.get('PMI_RANK', "
                                                  "os.environ.get('OMPI_COMM_WORLD_RANK', 0)))"))
    code, lines, _ = mpirun_within(DEADLINE_S, 2, *TRAIN)
    assert_one_line(code, lines, "ranks disagree on the model built by --model model.py:net: "
                                 "rank 0 has 4 layers, 610 parameters, "
                                 "rank 1 has 4 layers, 1,210 parameters")


def test_a_model_file_that_differs_between_nodes_is_refused(tmp_path):
    a, b = model_file(tmp_path / "a"), model_file(tmp_path / "b", width="17")
    code, lines = mpmd_within(DEADLINE_S, (1, ["-wdir", a], TRAIN), (1, ["-wdir", b], TRAIN))
    assert_one_line(code, lines, "ranks disagree on the model built by --model model.py:net",
                    "rank 1 has 4 layers, 1,285 parameters")


def test_a_model_file_broken_on_one_node_is_refused_naming_rank_file_and_line(tmp_path):
    a = model_file(tmp_path / "a")
    b = model_file(tmp_path / "b", text="def net(s, k):\n    return [\n")
    code, lines = mpmd_within(DEADLINE_S, (1, ["-wdir", a], TRAIN), (1, ["-wdir", b], TRAIN))
    assert_one_line(code, lines, "dptrain: error: rank 1: ", "b/model.py:2: syntax error")


DROPOUT = """
    import math
    import os
    from dptrain import nn


    def net(input_shape, num_classes):
        rate = 0.1 if os.environ.get('PMI_RANK', os.environ.get('OMPI_COMM_WORLD_RANK')) == '1' else 0.5
        return [nn.Flatten(), nn.Dense(math.prod(input_shape), 16), nn.Dropout(rate),
                nn.Dense(16, num_classes)]
"""


def test_a_rank_dependent_layer_without_parameters_is_refused(tmp_path, monkeypatch):
    # same layer kinds, array names and shapes: only the structure's layer descriptions differ
    # (this ran to exit 0 with each rank dropping its own fraction when only kinds and
    # shapes were compared)
    monkeypatch.chdir(model_file(tmp_path, text=DROPOUT))
    code, lines, _ = mpirun_within(DEADLINE_S, 2, *TRAIN)
    assert_one_line(code, lines, "ranks disagree on layer 2 of the model built by --model "
                                 "model.py:net: rank 0 has Dropout(0.5), rank 1 has Dropout(0.1)")
