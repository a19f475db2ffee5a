"""The metrics file keeps to docs/metrics.md: the keys of every line type as its table lists
them, epochs counted from 1 in every line, one run id and the schema version in each line."""
import json
import math
import re
from pathlib import Path

from dptrain.train import TrainConfig, Trainer
from dptrain.train.metrics import LINE_TYPES, SCHEMA_VERSION

ROOT = Path(__file__).resolve().parents[2]
COMMON = {"schema", "run_id", "type"}


def documented_keys() -> dict:
    """{line type: its keys} from the table of docs/metrics.md."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| (.+) \|$", text, re.M)
    return {kind: set(re.findall(r"`(\w+)`", keys)) for kind, keys in rows}


def train(tmp_path, **kw) -> list[dict]:
    out = tmp_path / "m.jsonl"
    cfg = dict(model="mlp", dataset="synthetic:1x8x8:100", batch_size=16, quiet=True,
               metrics_out=str(out), **kw)
    Trainer(TrainConfig(**cfg)).run()
    return [json.loads(line) for line in out.read_text().splitlines()]


def test_every_line_type_is_documented_with_its_keys(tmp_path):
    doc = documented_keys()
    assert set(doc) == set(LINE_TYPES)
    lines = train(tmp_path, max_steps=7, log_every=2, eval_train=True)
    assert {r["type"] for r in lines} == set(LINE_TYPES)       # the run wrote every type
    for r in lines:
        assert set(r) == COMMON | doc[r["type"]], r
        assert r["schema"] == SCHEMA_VERSION
    assert len({r["run_id"] for r in lines}) == 1
    assert lines[0]["type"] == "run" and lines[0]["ends_by"] == "--max-steps"


def test_epochs_are_counted_from_one_in_every_line(tmp_path):
    lines = train(tmp_path, max_steps=7, log_every=1)
    per_epoch = lines[0]["steps_per_epoch"]                     # 80 samples / 16 = 5
    steps = [r for r in lines if r["type"] == "step"]
    assert [r["step"] for r in steps] == list(range(1, 8))
    assert all(r["epoch"] == math.ceil(r["step"] / per_epoch) for r in steps)
    epochs = [(r["epoch"], r["step"]) for r in lines if r["type"] == "epoch"]
    assert epochs == [(1, per_epoch), (2, 7)]
    evals = [(r["epoch"], r["split"]) for r in lines if r["type"] == "eval"]
    assert evals == [(1, "test"), (2, "test")]                # no --eval-train: test only


def test_a_resumed_run_appends_with_its_own_id(tmp_path):
    """Only a run that resumes another appends to its metrics file (a fresh run is refused:
    test_outputs.py); each line says which of the two wrote it."""
    ck = str(tmp_path / "ck")
    first = train(tmp_path, max_steps=2, checkpoint_dir=ck, checkpoint_every="1")
    both = train(tmp_path, max_steps=4, checkpoint_dir=ck, resume=True)
    assert both[:len(first)] == first
    assert len({r["run_id"] for r in both}) == 2


def test_readme_points_to_the_schema_and_names_every_line_type():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("metrics JSONL"):]
    section = section[:section.index("\n- ", 1)]
    assert "docs/metrics.md" in section
    for kind in LINE_TYPES:
        assert f"`{kind}`" in section, kind
