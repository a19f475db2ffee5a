"""`dptrain check`: the layers' backprop by finite differences, 1 against 2 ranks, the summary
(docs/layers.md). A correct model passes; a wrong backward, a layer that mixes the samples of
its local batch, a layer that raises, each fail naming what failed; bad input is exit 2."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dptrain import models, nn
from dptrain.backend import Backend
from dptrain.model_check.command import check_layers
from dptrain.model_check.ranks import why_not_runnable

DOC = Path(__file__).parents[1] / "docs" / "layers.md"
NEEDS_RANKS = pytest.mark.skipif(why_not_runnable() is not None,
                                 reason=f"the rank check cannot run here: {why_not_runnable()}")


def example() -> str:
    """The user layer and model of docs/layers.md, verbatim."""
    return DOC.read_text().split("```python\n", 1)[1].split("```", 1)[0]


# The example's backward, broken: the gradient of s misses half of its terms.
WRONG = example().replace("self.grads[\"s\"][...] = xp.sum(dy * self._x, axis=axes)",
                          "self.grads[\"s\"][...] = 0.5 * xp.sum(dy * self._x, axis=axes)")

# Correct gradients, but centred on the local batch's mean: 2 ranks see other batches.
LOCAL_MEAN = """
    from dptrain import nn


    class LocalCentre(nn.Layer):
        def forward(self, x, train):
            return x - x.mean(axis=0, keepdims=True)

        def backward(self, dy):
            return dy - dy.mean(axis=0, keepdims=True)

        def __repr__(self):
            return "LocalCentre"


    def net(input_shape, num_classes):
        c, h, w = input_shape
        return [nn.Flatten(), nn.Dense(c * h * w, 8), LocalCentre(), nn.ReLU(),
                nn.Dense(8, num_classes)]
"""

RAISES = """
    from dptrain import nn


    class Broken(nn.Layer):
        def forward(self, x, train):
            return x

        def backward(self, dy):
            raise RuntimeError("not written yet")


    def net(input_shape, num_classes):
        c, h, w = input_shape
        return [nn.Flatten(), Broken(), nn.Dense(c * h * w, num_classes)]
"""


def check(tmp_path, *flags, source=None, timeout=300):
    if source is not None:
        (tmp_path / "model.py").write_text(textwrap.dedent(source))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for key in ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE"):
        env.pop(key, None)
    return subprocess.run([sys.executable, "-m", "dptrain", "check", *flags], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=timeout)


def test_the_example_layer_of_the_docs_passes_with_its_residual_model(tmp_path):
    res = check(tmp_path, "--model", "model.py:net", "--input-shape", "1x6x6", "--no-ranks",
                source=example())
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Scale(8)" in res.stdout and "check: passed" in res.stdout
    assert "ranks: skipped (--no-ranks)" in res.stdout
    assert "+ sum" in res.stdout                      # the summary shows the residual block


def test_a_wrong_backward_fails_naming_the_layer(tmp_path):
    assert WRONG != example()
    res = check(tmp_path, "--model", "model.py:net", "--input-shape", "1x6x6", "--no-ranks",
                "--json", source=WRONG)
    assert res.returncode == 1, res.stdout + res.stderr
    report = json.loads(res.stdout)
    failed = [r for r in report["layers"] if not r["ok"]]
    assert [r["layer"] for r in failed] == ["Scale(8)", "Scale(8)"]
    assert all(r["errors"]["s"] > 0.1 and r["errors"]["x"] < 1e-6 for r in failed)
    assert report["passed"] is False
    text = check(tmp_path, "--model", "model.py:net", "--input-shape", "1x6x6", "--no-ranks")
    assert text.returncode == 1
    assert text.stdout.strip().splitlines()[-1] == "check: FAILED: layer 1 Scale(8); layer 4 Scale(8)"


def test_a_layer_that_raises_is_a_failure_not_a_crash(tmp_path):
    res = check(tmp_path, "--model", "model.py:net", "--input-shape", "1x4x4", "--no-ranks",
                source=RAISES)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "raised RuntimeError: not written yet" in res.stdout
    assert "check: FAILED: layer 1 Broken" in res.stdout


@NEEDS_RANKS
def test_one_against_two_ranks_passes_a_zoo_model_with_batch_norm_and_residuals(tmp_path):
    res = check(tmp_path, "--model", "resnet-small", "--input-shape", "1x8x8", "--steps", "2",
                "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    ranks = json.loads(res.stdout)["ranks"]
    assert ranks["ok"] and ranks["arrays"] > 20 and ranks["largest"] < 1e-9


@NEEDS_RANKS
def test_a_layer_that_mixes_its_local_batch_fails_the_rank_check_only(tmp_path):
    res = check(tmp_path, "--model", "model.py:net", "--input-shape", "1x4x4", "--steps", "2",
                "--json", source=LOCAL_MEAN)
    assert res.returncode == 1, res.stdout + res.stderr
    report = json.loads(res.stdout)
    assert all(r["ok"] for r in report["layers"])     # its backward is right
    assert report["ranks"]["ok"] is False and report["ranks"]["largest"] > 1e-6
    assert "1.W" in report["ranks"]["differing"]       # the Dense before it


@pytest.mark.parametrize("flags,says", [
    (["--model", "no-such-net"], "unknown model 'no-such-net'"),
    (["--model", "model.py:net"], "give --input-shape CxHxW or --dataset"),
    (["--model", "model.py:nett", "--input-shape", "1x4x4"], "did you mean net"),
    (["--model", "mlp", "--input-shape", "1x4"], "--input-shape '1x4': expected CxHxW"),
    (["--model", "mlp", "--tol", "2"], "--tol and --rtol must lie in (0, 1)"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, flags, says):
    res = check(tmp_path, *flags, source=RAISES)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dptrain: error:") and says in lines[0], lines


def test_under_mpiexec_it_refuses_to_start_ranks_of_its_own(tmp_path):
    env = dict(os.environ, PMI_SIZE="2", PMI_RANK="0")
    res = subprocess.run([sys.executable, "-m", "dptrain", "check", "--model", "mlp"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and "run it as one process" in res.stderr


def test_each_leaf_is_checked_on_the_input_it_receives_inside_a_residual_block():
    model = models.Sequential(
        [nn.Flatten(), nn.Dense(12, 6),
         nn.Residual([nn.Dense(6, 6), nn.Tanh()], [nn.Dense(6, 6)]), nn.Dense(6, 3)],
        (3, 2, 2), backend=Backend(np, np.float64))
    rows = check_layers(model, batch_size=3, tol=1e-6)
    assert [r["layer"] for r in rows] == [repr(layer) for layer in model.layers]
    assert all(r["ok"] for r in rows), rows
    assert set(rows[2]["errors"]) == {"x", "W", "b"}
    assert np.isfinite([e for r in rows for e in r["errors"].values()]).all()


@NEEDS_RANKS
def test_a_two_rank_run_that_ran_as_one_rank_fails(tmp_path):
    """An mpiexec of another MPI starts two separate one-rank runs, which always agree."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "mpiexec").write_text('#!/bin/sh\nshift 2\nexec "$@"\n')     # drops "-n 2"
    (fake / "mpiexec").chmod(0o755)
    script = (f"import sys; from dptrain.model_check import ranks; "
              f"ranks.find_mpiexec = lambda: {str(fake / 'mpiexec')!r}; "
              f"from dptrain.cli import main; sys.exit(main(sys.argv[1:]))")
    res = subprocess.run([sys.executable, "-c", script, "check", "--model", "mlp",
                          "--input-shape", "1x4x4", "--steps", "1"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "the 2-rank run ran as 1 rank(s)" in res.stdout


# Right values, broken contract: the gradient rebound instead of filled (buckets replace
# grads with views: a rebound array is never reduced), and dy written into (a residual block
# hands one dy to both paths; s starts at 1, so the values stay right)
CONTRACT_BREACHES = {
    "rebinds its gradients": (
        example().replace("self.grads[\"s\"][...] = xp.sum(dy * self._x, axis=axes)",
                          "self.grads[\"s\"] = xp.sum(dy * self._x, axis=axes)"),
        "backward rebound grads['s']"),
    "writes into its dy": (
        example().replace("return dy * self._view(dy)",
                          "dy *= 2 * self._view(dy)\n        return dy / 2"),
        "backward wrote into the dy it was given"),
}


@pytest.mark.parametrize("breach", sorted(CONTRACT_BREACHES))
def test_a_layer_that_breaks_the_contract_fails_although_its_values_are_right(tmp_path, breach):
    source, says = CONTRACT_BREACHES[breach]
    assert source != example()
    res = check(tmp_path, "--model", "model.py:net", "--input-shape", "1x6x6", "--no-ranks",
                source=source)
    assert res.returncode == 1, res.stdout + res.stderr
    assert says in res.stdout
    assert "check: FAILED: layer 1 Scale(8); layer 4 Scale(8)" in res.stdout
