"""After a resume mid-epoch, the epoch's metrics line covers the whole epoch (the checkpoint
carries the epoch's sums), equal to the uninterrupted run's; a checkpoint without them gives
a line marked with the step it covers from (docs/metrics.md)."""
import json

import numpy as np

from dptrain.comm.local import LocalCommunicator
from dptrain.train import TrainConfig, Trainer, checkpoint

BASE = dict(model="mlp", dataset="synthetic:1x8x8:120", batch_size=24, quiet=True, threads=1,
            dtype="float64", epochs=2)          # 4 steps an epoch


def epoch_lines(path, **kw):
    Trainer(TrainConfig(**{**BASE, **kw}, metrics_out=str(path)), comm=LocalCommunicator()).run()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    run_id = lines[-1]["run_id"]
    return {line["epoch"]: line for line in lines if line["type"] == "epoch"
            and line["run_id"] == run_id}


def test_the_epoch_a_resume_cut_is_reported_whole(tmp_path, capsys):
    straight = epoch_lines(tmp_path / "straight.jsonl")
    d, m = tmp_path / "ck", tmp_path / "m.jsonl"
    epoch_lines(m, max_steps=2, checkpoint_dir=str(d), checkpoint_every="1")
    resumed = epoch_lines(m, checkpoint_dir=str(d), resume=True, quiet=False)
    for epoch in (1, 2):
        for key in ("loss", "accuracy", "step", "lr"):
            assert resumed[epoch][key] == straight[epoch][key], (epoch, key)
        assert "since_step" not in resumed[epoch]
    assert "only" not in capsys.readouterr().out


def test_without_the_sums_the_line_says_what_it_covers(tmp_path, capsys):
    d, m = tmp_path / "ck", tmp_path / "m.jsonl"
    epoch_lines(m, max_steps=2, checkpoint_dir=str(d), checkpoint_every="1")
    path = checkpoint.list_checkpoints(d)[-1]
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta.pop("epoch_sums")                      # as a checkpoint of an older dptrain
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype="uint8")
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    resumed = epoch_lines(m, checkpoint_dir=str(d), resume=True, quiet=False)
    assert resumed[1]["since_step"] == 2 and "since_step" not in resumed[2]
    out = capsys.readouterr().out
    assert "epoch   1  step      4" in out and "(steps 3-4 only)" in out
