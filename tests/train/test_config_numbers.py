"""Every numeric setting is checked for type, range and finiteness, naming the flag."""
import math

import pytest

from dptrain.errors import UsageError
from dptrain.train.config import FIELD_NAMES, TrainConfig, load_toml
from dptrain.train.validate import RULES, check_number


@pytest.mark.parametrize("name,value,says", [
    ("comm_timeout", math.nan, "--comm-timeout must be a finite number, got nan"),
    ("bucket_mb", math.nan, "--bucket-mb must be a finite number"),
    ("lr", math.inf, "--lr must be a finite number, got inf"),
    ("weight_decay", math.nan, "--weight-decay must be a finite number"),
    ("lr_gamma", -1.0, "--lr-gamma must be in (0, 1], got -1"),
    ("lr_step_size", 0, "--lr-step-size must be positive, got 0"),
    ("momentum", -5.0, "--momentum must be in [0, 1), got -5"),
    ("momentum", 1.0, "--momentum must be in [0, 1), got 1"),
    ("batch_size", 0, "--batch-size must be positive, got 0"),
    ("seed", -1, "--seed must be in [0, 9223372036854775808), got -1"),
    ("obs_pressure", math.nan, "--obs-pressure must be a finite number"),
    ("as_delta_p", 1.5, "--as-delta-p must be in [0, 1], got 1.5"),
    ("sampler_min_prob", math.inf, "--sampler-min-prob must be a finite number"),
    ("num_classes", 1, "--num-classes must be >= 2, got 1"),
    ("epochs", 2.5, "--epochs must be an integer, got 2.5"),
    ("lr", True, "--lr must be a number, got True"),
])
def test_bad_numbers_are_refused_naming_the_flag(name, value, says):
    with pytest.raises(UsageError) as exc:
        TrainConfig(**{name: value}).validate()
    assert str(exc.value).startswith(says), str(exc.value)


def test_every_numeric_field_has_a_rule():
    numeric = {f for f in FIELD_NAMES
               if str(TrainConfig.__dataclass_fields__[f].type).split(" |")[0] in ("int", "float")}
    assert numeric == set(RULES)


@pytest.mark.parametrize("name", sorted(RULES))
def test_nan_and_inf_are_refused_for_every_number(name):
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(UsageError, match="--" + name.replace("_", "-")):
            check_number(name, bad)


def test_defaults_pass():
    TrainConfig().validate()


def test_config_file_not_utf8(tmp_path):
    path = tmp_path / "c.toml"
    path.write_bytes(b'model = "\xff\xfe"\n')
    with pytest.raises(UsageError, match=r"c.toml: not a UTF-8 text file"):
        load_toml(path)


def test_nan_in_a_config_file_names_the_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("comm-timeout = nan\n")
    with pytest.raises(UsageError, match="--comm-timeout must be a finite number"):
        TrainConfig(**load_toml(path)).validate()


@pytest.mark.parametrize("argv,says", [
    (["--bucket-mb", "nan"], "--bucket-mb must be a finite number, got nan"),
    (["--node-gflops", "-1"], "--node-gflops must be positive, got -1"),
    (["--warmup", "-1"], "--warmup must be in [0, 1000000], got -1"),
    (["--steps", "0"], "--steps must be in [1, 1000000], got 0"),
])
def test_bench_numbers_are_checked_before_running(argv, says):
    from dptrain.cli import build_parser
    from dptrain.train.validate import check_bench_numbers
    args = build_parser().parse_args(["bench", *argv])
    with pytest.raises(UsageError) as exc:
        check_bench_numbers(args)
    assert str(exc.value) == says
