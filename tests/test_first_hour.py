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
