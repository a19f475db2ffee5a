"""Help that teaches: every flag of every command has help text and states its default; the
train flags come in groups; --version; every model is listed by `dptrain models`, in the
README, and with a parameter count that matches the zoo."""
import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dptrain import __version__, models
from dptrain.cli import build_parser
from dptrain.models.catalogue import MODELS, catalogue

ROOT = Path(__file__).resolve().parent.parent
GROUPS = ["data", "model", "optimisation", "parallelism", "checkpoints", "output and evaluation",
          "debugging"]


def commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


@pytest.mark.parametrize("name", sorted(commands()))
def test_every_flag_has_help_and_its_default(name):
    parser = commands()[name]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if not action.option_strings or action.dest == "help":
            continue
        text = formatter._get_help_string(action)
        flag = action.option_strings[-1]
        assert action.help and len(action.help) > 10, flag
        assert "(default: " in text or "(required)" in text, (name, flag, text)


def test_train_flags_are_grouped():
    text = commands()["train"].format_help()
    positions = [text.index(f"\n{group}:\n") for group in GROUPS]
    assert positions == sorted(positions)
    assert "--no-sync-bn" in text and "--eval-train" in text and "--eval-every" in text


def test_version():
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "--version"], capture_output=True,
                         text=True)
    assert res.returncode == 0 and res.stdout.strip() == f"dptrain {__version__}"


def test_models_lists_every_model_with_its_true_size():
    assert [r["model"] for r in catalogue()] == models.names()
    for name, (params, _) in MODELS.items():
        if name != "vgg-a":                   # 129 M parameters: counted from its layers below
            assert models.get(name).num_params() == params, name
    c, h, w = 3, 224, 224
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512), (512, 512), (512, 512),
             (512, 512)]
    vgg_a = sum(9 * i * o + o for i, o in convs) + (512 * 7 * 7 + 1) * 4096 \
        + (4096 + 1) * 4096 + (4096 + 1) * 10
    assert MODELS["vgg-a"][0] == vgg_a
    res = subprocess.run([sys.executable, "-m", "dptrain.cli", "summary", "--list"],
                         capture_output=True, text=True)
    assert res.returncode == 0 and all(name in res.stdout for name in models.names())


def test_readme_names_every_model():
    readme = (ROOT / "README.md").read_text()
    for name in models.names():
        assert re.search(rf"`{re.escape(name)}`", readme), name
