"""Ranks that were given different things stop at start-up (issue 20, kind 1): exit 2, one
line naming the field and which ranks hold which value, within a deadline, on every rank.

Each case launches MPMD (``mpiexec -n 1 A : -n 1 B``, hydra's syntax): rank 1 gets one flag,
file or variable of its own. Before the comparison these ran to exit 0 with mixed replicas
(--seed, --lr, data contents) or died in a raw MPI abort (--max-steps, --batch-size,
--check-collectives)."""
import os
import sys

import numpy as np
import pytest

from test_agreed_startup import job_within

MPIEXEC = os.path.join(os.path.dirname(sys.executable), "mpiexec")
pytestmark = pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
DEADLINE_S = 30


def mpmd_within(deadline, *blocks, cwd=None):
    """Run ``blocks`` (each: (count, extra mpiexec options, dptrain arguments)) as one job;
    (returncode, stderr lines). Fails the test if the job outlives ``deadline``."""
    cmd = [MPIEXEC]
    for i, (n, options, args) in enumerate(blocks):
        cmd += ([":"] if i else []) + ["-n", str(n), *options, sys.executable, "-m",
                                        "dptrain.cli", *map(str, args)]
    code, lines, _ = job_within(deadline, cmd, cwd=cwd)
    return code, lines


def write_npz(path, change=False):
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 1, 8, 8), dtype=np.float32), np.arange(64) % 4
    if change:
        x[37, 0, 2, 5] += 0.25                      # one pixel of one sample
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=x, y=y)


def train(dataset, *extra):
    # a long --comm-timeout: only the start-up agreement can end these jobs in time
    return ["train", "--model", "mlp", "--dataset", dataset, "--batch-size", 16,
            "--max-steps", 3, "--quiet", "--comm-timeout", 300, *extra]


@pytest.fixture
def npz(tmp_path):
    write_npz(tmp_path / "d.npz")
    return f"npz:{tmp_path / 'd.npz'}"


def assert_one_line(code, lines, *named):
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("dptrain: error: ranks disagree on "), lines
    for text in named:
        assert text in lines[0], lines


@pytest.mark.parametrize("flags,named", [
    (["--seed", 7], "--seed: rank 0 has 0, rank 1 has 7"),
    (["--lr", 0.5], "--lr: rank 0 has none, rank 1 has 0.5"),
    (["--momentum", 0.5], "--momentum: rank 0 has none, rank 1 has 0.5"),
    (["--accumulate", 2], "--accumulate: rank 0 has 1, rank 1 has 2"),
    (["--augment", "flip"], "--augment: rank 0 has none, rank 1 has flip"),
    (["--max-steps", 5], "--max-steps: rank 0 has 3, rank 1 has 5"),
    (["--batch-size", 32], "--batch-size: rank 0 has 16, rank 1 has 32"),
    (["--check-collectives", "strict"], "--check-collectives (or $DPTRAIN_CHECK_COLLECTIVES): "
                                        "rank 0 has off, rank 1 has strict"),
])
def test_a_flag_given_to_one_rank_only_is_refused(npz, flags, named):
    # "--max-steps 5" after "--max-steps 3": argparse takes the last one
    code, lines = mpmd_within(DEADLINE_S, (1, [], train(npz)), (1, [], train(npz, *flags)))
    assert_one_line(code, lines, named)


def test_the_check_collectives_variable_on_one_rank_is_refused_before_it_wraps_anything(npz):
    code, lines = mpmd_within(DEADLINE_S, (1, ["-env", "DPTRAIN_CHECK_COLLECTIVES", "2"],
                                           train(npz)), (1, [], train(npz)))
    assert_one_line(code, lines, "$DPTRAIN_CHECK_COLLECTIVES): rank 0 has 2, rank 1 has off")


def test_a_data_file_with_other_contents_at_the_same_path_is_refused(tmp_path):
    """The same relative path 'd.npz' read in two working directories, as on two nodes
    holding different copies: equal shapes, one pixel differs."""
    write_npz(tmp_path / "a" / "d.npz")
    write_npz(tmp_path / "b" / "d.npz", change=True)
    code, lines = mpmd_within(DEADLINE_S, (1, ["-wdir", tmp_path / "a"], train("npz:d.npz")),
                              (1, ["-wdir", tmp_path / "b"], train("npz:d.npz")))
    assert_one_line(code, lines, "the content of the training images of npz:d.npz: rank 0 has crc32 ")


def test_a_data_file_of_another_length_is_refused(tmp_path):
    write_npz(tmp_path / "a" / "d.npz")
    rng = np.random.default_rng(0)
    (tmp_path / "b").mkdir()
    np.savez(tmp_path / "b" / "d.npz", x=rng.random((80, 1, 8, 8), dtype=np.float32),
             y=np.arange(80) % 4)
    code, lines = mpmd_within(DEADLINE_S, (1, ["-wdir", tmp_path / "a"], train("npz:d.npz")),
                              (1, ["-wdir", tmp_path / "b"], train("npz:d.npz")))
    assert_one_line(code, lines, "the shape of the training images of npz:d.npz: "
                                 "rank 0 has 52x1x8x8 float32, rank 1 has 64x1x8x8 float32")


def test_a_config_that_reaches_one_rank_only_is_refused(tmp_path, npz):
    """What `--config <(...)` does under mpiexec: the other ranks read an empty pipe."""
    (tmp_path / "c.toml").write_text("seed = 3\n")
    (tmp_path / "empty.toml").write_text("")
    code, lines = mpmd_within(DEADLINE_S, (1, [], train(npz, "--config", tmp_path / "c.toml")),
                              (1, [], train(npz, "--config", tmp_path / "empty.toml")))
    assert_one_line(code, lines, "--seed: rank 0 has 3, rank 1 has 0")


def test_four_ranks_are_named_by_group(npz):
    code, lines = mpmd_within(DEADLINE_S, (1, [], train(npz)), (1, [], train(npz, "--seed", 7)),
                              (1, [], train(npz)), (1, [], train(npz, "--seed", 7)))
    assert_one_line(code, lines, "--seed: ranks 0,2 have 0; ranks 1,3 have 7")


def test_what_may_differ_per_rank_still_trains(npz):
    """--threads (a node's resources) and --quiet (only rank 0 prints) are not compared."""
    loud = [a for a in train(npz, "--threads", 1) if a != "--quiet"]
    code, lines = mpmd_within(DEADLINE_S, (1, [], loud), (1, [], train(npz, "--threads", 2)))
    assert code == 0, lines


def test_a_rank_local_problem_is_still_reported_by_its_rank(tmp_path, npz):
    code, lines = mpmd_within(DEADLINE_S, (1, [], train(npz)),
                              (1, [], train(f"npz:{tmp_path / 'missing.npz'}")))
    assert code == 2 and len(lines) == 1, lines
    assert lines[0].startswith("dptrain: error: rank 1: ") and "missing.npz" in lines[0], lines


def test_ranks_that_resume_different_checkpoints_are_refused(tmp_path):
    """Each rank reads its own --checkpoint-dir 'ck' (two nodes' local disks): one holds the
    checkpoint of step 2, the other that of step 3."""
    write_npz(tmp_path / "d.npz")
    dataset = f"npz:{tmp_path / 'd.npz'}"
    for name, steps in (("a", 2), ("b", 3)):
        (tmp_path / name).mkdir()
        code, lines = mpmd_within(DEADLINE_S, (1, ["-wdir", tmp_path / name],
                                               train(dataset, "--max-steps", steps,
                                                     "--checkpoint-dir", "ck")))
        assert code == 0, lines
    resume = train(dataset, "--max-steps", 6, "--checkpoint-dir", "ck", "--resume")
    code, lines = mpmd_within(DEADLINE_S, (1, ["-wdir", tmp_path / "a"], resume),
                              (1, ["-wdir", tmp_path / "b"], resume))
    assert_one_line(code, lines, "the checkpoint resumed from: rank 0 has ckpt-000000002.npz "
                                 "(step 2), rank 1 has ckpt-000000003.npz (step 3)")


@pytest.mark.parametrize("edit,named", [
    (lambda text: text.replace('__version__ = "', '__version__ = "9.'), "the dptrain version: "),
    (lambda text: text + "# another copy\n", "the dptrain code (its source files): "),
])
def test_another_dptrain_on_one_rank_is_refused(tmp_path, npz, edit, named):
    """Rank 1 imports a copy of the package (PYTHONPATH), as a node with another install
    would: another version, or the same version with other code."""
    import shutil
    import dptrain
    copy = tmp_path / "other" / "dptrain"
    shutil.copytree(os.path.dirname(dptrain.__file__), copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    init = copy / "__init__.py"
    init.write_text(edit(init.read_text()))
    code, lines = mpmd_within(DEADLINE_S, (1, [], train(npz)),
                              (1, ["-env", "PYTHONPATH", tmp_path / "other"], train(npz)),
                              cwd=tmp_path)
    assert_one_line(code, lines, named, "rank 0 has ", "rank 1 has ")
