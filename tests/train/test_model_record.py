"""Checkpoints and --save-weights files record the model (reference and structural
fingerprint); resume and eval refuse another model in one line saying what differs, accept
the same structure under another path, and accept files written before the record existed."""
import json
import textwrap

import numpy as np
import pytest

from dptrain.cli import main
from dptrain.models import get
from dptrain.models.structure import difference, fingerprint, mismatch

NARROW = """
    import math
    from dptrain import nn


    def net(input_shape, num_classes, width=16):
        return [nn.Flatten(), nn.Dense(math.prod(input_shape), width), nn.ReLU(),
                nn.Dense(width, num_classes)]


    def wide(input_shape, num_classes):
        return net(input_shape, num_classes, width=32)


    def deeper(input_shape, num_classes):
        return net(input_shape, num_classes)[:-1] + [nn.Dense(16, 16), nn.ReLU(), nn.Dense(16, num_classes)]
"""
RUN = ["--dataset", "synthetic:1x8x8:64", "--batch-size", "16", "--quiet"]


@pytest.fixture
def trained(tmp_path, monkeypatch, capfd):
    """A 2-step run of narrow.py:net with a checkpoint directory and a weights file."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "narrow.py").write_text(textwrap.dedent(NARROW))
    assert main(["train", "--model", "narrow.py:net", *RUN, "--max-steps", "2",
                 "--checkpoint-dir", "ck", "--save-weights", "w.npz"]) == 0
    capfd.readouterr()
    return tmp_path


def one_error(capfd, argv):
    assert main(argv) == 2
    lines = capfd.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dptrain: error: "), lines
    return lines[0]


def test_resume_with_another_model_names_the_first_difference(trained, capfd):
    line = one_error(capfd, ["train", "--model", "narrow.py:wide", *RUN, "--max-steps", "4",
                             "--checkpoint-dir", "ck", "--resume"])
    assert "checkpoint ck/ckpt-000000002.npz: written by model narrow.py:net (1,210 parameters)" in line
    assert "this run builds narrow.py:wide" in line
    assert "layer 1 is Dense(64->16) there, Dense(64->32) here" in line


def test_resume_with_a_zoo_model_names_the_first_difference(trained, capfd):
    line = one_error(capfd, ["train", "--model", "mlp", *RUN, "--max-steps", "4",
                             "--checkpoint-dir", "ck", "--resume"])
    assert "this run builds mlp" in line and "Dense(64->256) here" in line


def test_eval_with_another_model_names_the_first_difference(trained, capfd):
    line = one_error(capfd, ["eval", "--model", "narrow.py:deeper", "--weights", "w.npz",
                             "--dataset", "synthetic:1x8x8:64"])
    assert line.startswith("dptrain: error: weights w.npz: written by model narrow.py:net")
    assert "layer 3 is Dense(16->10) there, Dense(16->16) here" in line


def test_the_same_structure_from_a_moved_file_resumes_and_evaluates(trained, capfd):
    (trained / "moved.py").write_text((trained / "narrow.py").read_text())
    assert main(["train", "--model", "moved.py:net", *RUN, "--max-steps", "3",
                 "--checkpoint-dir", "ck", "--resume"]) == 0
    assert main(["eval", "--model", "moved.py:net", "--weights", "w.npz",
                 "--dataset", "synthetic:1x8x8:64"]) == 0


def rewrite_meta(path, change) -> None:
    """Rewrite a checkpoint with ``change(meta)`` applied to its JSON record, as an older or
    a crafted file would hold it."""
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    change(meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_files_written_without_a_fingerprint_are_checked_by_name_as_before(trained, capfd):
    rewrite_meta(trained / "ck" / "ckpt-000000002.npz", lambda meta: meta.pop("model_fingerprint"))
    with np.load(trained / "w.npz") as z:
        np.savez(trained / "old.npz", **{k: z[k] for k in z.files if k != "meta"})
    line = one_error(capfd, ["train", "--model", "narrow.py:wide", *RUN, "--max-steps", "4",
                             "--checkpoint-dir", "ck", "--resume"])
    assert "model='narrow.py:net' (now 'narrow.py:wide')" in line       # the name check
    assert main(["train", "--model", "narrow.py:net", *RUN, "--max-steps", "3",
                 "--checkpoint-dir", "ck", "--resume"]) == 0
    assert main(["eval", "--model", "narrow.py:net", "--weights", "old.npz",
                 "--dataset", "synthetic:1x8x8:64"]) == 0


def test_a_crafted_fingerprint_is_refused_naming_the_field(trained, capfd):
    rewrite_meta(trained / "ck" / "ckpt-000000002.npz",
                 lambda meta: meta.update(model_fingerprint={"digest": 3}))
    line = one_error(capfd, ["train", "--model", "narrow.py:net", *RUN, "--max-steps", "4",
                             "--checkpoint-dir", "ck", "--resume"])
    assert "checkpoint field 'model_fingerprint' must be a model fingerprint" in line


def test_the_fingerprint_names_layer_kinds_arrays_and_shapes():
    fp = fingerprint(get("mlp", (1, 4, 4), 3))
    assert fp["layers"][:2] == ["Flatten", "Dense(16->256)"]
    assert fp["arrays"][0] == ["1.W", [16, 256], "float32"]
    other = fingerprint(get("mlp", (1, 4, 4), 5))
    assert difference(fp, other) == "layer 5 is Dense(256->3) there, Dense(256->5) here"
    assert fp["digest"] != other["digest"] and difference(fp, fp) is None
    same = fingerprint(get("mlp", (1, 4, 4), 3, seed=9))        # values are not structure
    assert same["digest"] == fp["digest"]
    assert mismatch("x", "mlp", fp, "mlp", get("mlp", (1, 4, 4), 3)) is None


def test_a_layer_without_parameters_that_differs_is_named():
    a = fingerprint(get("lenet5", (1, 28, 28), 10))
    b = dict(a, layers=[t.replace("Tanh", "ReLU", 1) if i == 1 else t
                        for i, t in enumerate(a["layers"])])
    assert difference(a, b) == "layer 1 is Tanh there, ReLU here"
