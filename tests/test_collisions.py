"""Runs that collide or run out of disk (real processes): a second run on a checkpoint
directory in use is refused naming the owner; a full file system during a checkpoint is
exit 3 with one line and the previous checkpoint intact."""
import json
import os
import signal
import subprocess

import pytest

from dptrain.train import checkpoint, lock
from test_cli import assert_usage_error, dptrain
from test_faults import LONG_RUN, MPIEXEC, finish, start, wait_for_checkpoints


@pytest.mark.skipif(not os.path.exists(MPIEXEC), reason="no mpiexec beside the Python")
def test_second_run_on_a_checkpoint_directory_in_use_is_refused(tmp_path):
    d = tmp_path / "ck"
    first = start(LONG_RUN + ["--checkpoint-dir", d, "--checkpoint-every", 5], n=2)
    try:
        wait_for_checkpoints(d)
        owner = json.loads((d / lock.LOCK_NAME).read_text())
        second = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x28x28:3000", "--quiet",
                         "--checkpoint-dir", d, "--max-steps", 2)
        assert_usage_error(second, f"--checkpoint-dir {d} is in use by pid {owner['pid']}",
                           "give another directory")
    finally:
        os.killpg(first.pid, signal.SIGTERM)
    code, err, _ = finish(first, timeout=60)
    assert code == 0, err
    # every checkpoint is the first run's (the refused one wrote and pruned nothing)
    assert {checkpoint.read(p)["meta"]["model"] for p in checkpoint.list_checkpoints(d)} == {"thesis-cnn"}
    assert not (d / lock.LOCK_NAME).exists()                 # released on the way out


@pytest.fixture
def small_filesystem(tmp_path):
    """A 1 MiB tmpfs (needs the right to mount; skipped elsewhere, where test_outputs.py's
    injected ENOSPC covers the same path)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
                         capture_output=True)
    if res.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_checkpoint_into_a_full_file_system(small_filesystem):
    d = small_filesystem / "ck"
    # mlp on 1x8x8 with momentum: about 0.7 MB a checkpoint, so the second does not fit
    res = dptrain("train", "--model", "mlp", "--dataset", "synthetic:1x8x8:200", "--quiet",
                  "--checkpoint-dir", d, "--checkpoint-every", 2, "--max-steps", 6, "--epochs", 10)
    assert res.returncode == 3, res.stderr
    lines = res.stderr.strip().splitlines()
    assert lines == [f"dptrain: training failed: cannot write the checkpoint of step 4 to "
                     f"{d / 'ckpt-000000004.npz'} "
                     "(No space left on device); the previous checkpoints are intact"], lines
    assert [p.name for p in checkpoint.list_checkpoints(d)] == ["ckpt-000000002.npz"]
    assert checkpoint.read(d / "ckpt-000000002.npz")["meta"]["step"] == 2
    assert sorted(os.listdir(d)) == ["ckpt-000000002.npz"]      # no temporary file, no lock
