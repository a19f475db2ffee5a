"""Models from the user's code (--model FILE.py:NAME, package.module:NAME): good files train,
evaluate, summarise and bench; broken ones are one exit-2 line naming the file (and line),
the traceback only with --debug (docs/errors.md, docs/own-model.md)."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dptrain import models, nn
from dptrain.cli import main
from dptrain.errors import ModelError, UsageError
from dptrain.models import reference

GOOD = """
    import math
    from dptrain import nn


    def net(input_shape, num_classes):
        return [nn.Flatten(), nn.Dense(math.prod(input_shape), 16), nn.ReLU(),
                nn.Dense(16, num_classes)]
"""
DATA = ["--dataset", "synthetic:1x8x8:64", "--batch-size", "16", "--max-steps", "2", "--quiet"]


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "dptrain.cli", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=120)


def error_line(capfd, argv):
    """exit 2 and the one stderr line, with no traceback."""
    code = main(argv)
    err = capfd.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("dptrain: error: "), err
    return lines[0]


@pytest.fixture
def model_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)            # a FILE.py is resolved against the current directory
    write(tmp_path / "good.py", GOOD)
    return tmp_path


def test_a_model_file_trains_saves_and_evaluates(model_dir):
    res = run("train", "--model", "good.py:net", *DATA, "--save-weights", "w.npz", cwd=model_dir)
    assert res.returncode == 0, res.stderr
    ev = run("eval", "--model", "good.py:net", "--weights", "w.npz",
             "--dataset", "synthetic:1x8x8:64", cwd=model_dir)
    assert ev.returncode == 0, ev.stderr
    assert "good.py:net on synthetic:1x8x8:64" in ev.stdout


def test_a_model_file_in_a_config_file_and_in_summary_and_bench(model_dir, capfd):
    (model_dir / "c.toml").write_text('model = "good.py:net"\nmax_steps = 1\n')
    assert main(["train", "--config", "c.toml", *DATA]) == 0
    assert main(["summary", "--model", "good.py:net", "--input-shape", "1x8x8"]) == 0
    out = capfd.readouterr().out
    assert "model good.py:net" in out and "Dense(64->16)" in out
    assert main(["bench", "--model", "good.py:net", "--input-shape", "1x8x8", "--steps", "1",
                 "--warmup", "0", "--rounds", "1", "--batch-size", "4"]) == 0
    out = capfd.readouterr().out
    assert "dptrain step" in out and "model of your own, which has no PyTorch counterpart" in out


def test_a_model_file_in_the_weak_scaling_bench(model_dir):
    """bench --ranks runs the file's model in every rank's worker (dp_worker.py)."""
    res = run("bench", "--model", "good.py:net", "--input-shape", "1x8x8", "--ranks", "1,2",
              "--schedules", "blocking", "--steps", "2", "--warmup", "1", "--rounds", "1",
              "--batch-size", "4", "--json-out", "scaling.json", cwd=model_dir)
    assert res.returncode == 0, res.stdout + res.stderr
    report = json.loads((model_dir / "scaling.json").read_text())
    assert report["model"] == "good.py:net"
    assert sorted({r["ranks"] for r in report["rows"]}) == [1, 2], report


def test_a_package_module_reference_imports_from_pythonpath(tmp_path):
    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    write(pkg / "nets.py", GOOD)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    res = run("summary", "--model", "mypkg.nets:net", "--input-shape", "1x8x8", "--json",
              cwd=tmp_path, env=env)
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout)
    assert summary["model"] == "mypkg.nets:net" and summary["total_params"] == 1210


def test_the_model_is_named_by_its_spec_and_built_with_the_seed(model_dir):
    a = models.get("good.py:net", (1, 8, 8), 10, seed=1)
    b = models.get("good.py:net", (1, 8, 8), 10, seed=2)
    assert a.name == "good.py:net" and a.num_params() == 64 * 16 + 16 + 16 * 10 + 10
    assert (a.state_dict()["1.W"] != b.state_dict()["1.W"]).any()


def test_a_registered_builder_is_never_imported_again(tmp_path):
    calls = []

    def mine(input_shape, num_classes):
        calls.append(input_shape)
        return [nn.Flatten(), nn.Dense(4, num_classes)]
    spec = reference.register(mine)
    assert spec == f"{__file__}:{mine.__qualname__}"
    assert reference.load_builder(spec) is mine
    assert reference.register(mine, "script.py:mine") == "script.py:mine"   # no such file:
    model = models.get("script.py:mine", (1, 2, 2), 3)                    # the registry answers
    assert model.name == "script.py:mine" and calls == [(1, 2, 2)]


BROKEN = {
    "syntax": ("def net(s, k):\n    return [\n", "bad.py:net", ["bad.py:2", "syntax error"]),
    "raises": ("def net(s, k):\n    width = int('wide')\n    return []\n", "bad.py:net",
               ["bad.py:2", "ValueError", "'wide'"]),
    "raises at import": ("import no_such_dependency_x\n", "bad.py:net",
                         ["bad.py:1", "ModuleNotFoundError", "no_such_dependency_x"]),
    "missing name": (textwrap.dedent(GOOD), "bad.py:nett", ["bad.py", "no 'nett'", "did you mean net?"]),
    "not callable": ("net = 3\n", "bad.py:net", ["bad.py", "net is of type int"]),
    "wrong return": ("def net(s, k):\n    return {'a': 1}\n", "bad.py:net",
                     ["bad.py:net", "returned a dict", "list of dptrain.nn layers"]),
    "not a layer": ("def net(s, k):\n    return [3]\n", "bad.py:net",
                    ["bad.py:net", "item 0 is a int"]),
    "does not fit": ("from dptrain import nn\ndef net(s, k):\n"
                     "    return [nn.Flatten(), nn.Dense(100, k)]\n", "bad.py:net",
                     ["bad.py:net", "layer 1 Dense(100->10) does not fit its input 64"]),
    "exits": ("import sys\ndef net(s, k):\n    sys.exit(3)\n", "bad.py:net",
              ["bad.py:3", "SystemExit"]),
    "missing file": (None, "absent.py:net", ["absent.py", "no such model file"]),
    "missing module": (None, "absent_pkg_x.nets:net", ["no module named 'absent_pkg_x'"]),
    "no name": (None, "bad.py:", ["expected FILE.py:NAME or package.module:NAME"]),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_model_is_one_line_naming_the_file(model_dir, capfd, case):
    text, spec, named = BROKEN[case]
    if text is not None:
        (model_dir / "bad.py").write_text(text)
    line = error_line(capfd, ["train", "--model", spec, *DATA])
    assert "Traceback" not in line
    for fragment in named:
        assert fragment in line, line


@pytest.mark.parametrize("command", [["summary", "--model", "good.py:net"],
                                     ["bench", "--model", "good.py:net"]])
def test_a_model_of_ones_own_needs_the_input_shape(model_dir, capfd, command):
    assert "input-shape CxHxW" in error_line(capfd, command)


def test_bench_modes_that_cannot_take_a_model_file_say_so(model_dir, capfd):
    line = error_line(capfd, ["bench", "--model", "good.py:net", "--input-shape", "1x8x8",
                              "--profile"])
    assert "bench --profile: --model good.py:net is a model of your own" in line


@pytest.mark.parametrize("case", ["raises", "syntax"])
def test_debug_shows_the_traceback(model_dir, case):
    (model_dir / "bad.py").write_text(BROKEN[case][0])
    res = run("train", "--model", "bad.py:net", *DATA, "--debug", cwd=model_dir)
    assert res.returncode == 2
    assert "Traceback" in res.stderr and 'bad.py", line 2' in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("dptrain: error: ")


def test_model_error_is_a_usage_error():
    assert issubclass(ModelError, UsageError) and issubclass(ModelError, ValueError)


def test_the_example_of_docs_own_model_trains(tmp_path, monkeypatch, capfd):
    doc = (Path(__file__).parents[2] / "docs" / "own-model.md").read_text()
    example = doc.split("```python\n", 1)[1].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_model.py").write_text(example)
    assert main(["train", "--model", "my_model.py:small_cnn", "--dataset", "synthetic:1x28x28:64",
                 "--batch-size", "16", "--max-steps", "1", "--quiet"]) == 0
    assert main(["summary", "--model", "my_model.py:small_cnn", "--input-shape", "1x28x28"]) == 0
    assert "Conv2D(1->16, 3x3, stride 1, pad 1)" in capfd.readouterr().out


def test_the_residual_example_of_the_docs_trains_and_equals_its_leaf_count(tmp_path, monkeypatch, capfd):
    """docs/own-model.md's second example (a tiny ResNet) builds, trains a step and sums."""
    doc = (Path(__file__).parents[2] / "docs" / "own-model.md").read_text()
    example = doc.split("```python\n")[2].split("```", 1)[0]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "my_resnet.py").write_text(example)
    assert main(["train", "--model", "my_resnet.py:tiny_resnet", "--dataset",
                 "synthetic:1x8x8:64", "--batch-size", "16", "--max-steps", "1", "--quiet"]) == 0
    model = models.get("my_resnet.py:tiny_resnet", (1, 8, 8), 10)
    # stem 3, block 1: 5 + ReLU, block 2: 5 + projection 2 + ReLU, pool, dense
    assert len(model.layers) == 3 + 6 + 8 + 2
    assert main(["summary", "--model", "my_resnet.py:tiny_resnet", "--input-shape", "1x8x8"]) == 0
    assert "+ sum" in capfd.readouterr().out


RESIDUAL = """
    from dptrain import nn


    def net(input_shape, num_classes):
        c, h, w = input_shape
        return [nn.Conv2D(c, 4, 3, padding=1), nn.ReLU(),
                nn.Residual([nn.Conv2D(4, 4, 3, padding=1), nn.ReLU()]),
                nn.Flatten(), nn.Dense(4 * h * w, num_classes)]


    def misfit(input_shape, num_classes):
        c, h, w = input_shape
        return [nn.Conv2D(c, 4, 3, padding=1),
                nn.Residual([nn.Conv2D(4, 8, 3, padding=1)]),
                nn.Flatten(), nn.Dense(8 * h * w, num_classes)]
"""


def test_a_model_file_with_a_residual_block_trains(model_dir, capfd):
    """A builder may return residual blocks (nn.Residual) among its layers; one whose branch
    and shortcut cannot be summed is the exit-2 line naming the block."""
    write(model_dir / "res.py", RESIDUAL)
    assert main(["train", "--model", "res.py:net", *DATA]) == 0
    line = error_line(capfd, ["train", "--model", "res.py:misfit", *DATA])
    assert "res.py:misfit: layer 1 Residual(1 items, identity shortcut) does not fit" in line
    assert "cannot be summed" in line
