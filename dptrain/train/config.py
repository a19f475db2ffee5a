"""Training configuration: defaults, TOML files and validation.

A TOML file holds the same keys as the command-line flags (dashes or
underscores); flags given on the command line win. Unknown keys and
impossible values are UsageErrors naming the key.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields

from ..comm import timeout_policy
from ..comm.choice import preferences as comm_preferences
from ..errors import UsageError
from ..parallel import PROGRESS_MODES, SCHEDULES, schedules
from ..input_files import NotRegularFile, read_config_bytes


def parse_interval(text) -> tuple[int, str]:
    """'500' / '500steps' -> (500, 'step'); '2e' / '2epochs' -> (2, 'epoch')."""
    t = str(text).strip().lower()
    for suffix, unit in (("epochs", "epoch"), ("epoch", "epoch"), ("e", "epoch"),
                         ("steps", "step"), ("step", "step"), ("", "step")):
        count = t[:len(t) - len(suffix)] if suffix else t
        if t.endswith(suffix) and count.isdigit():
            return int(count), unit
    raise UsageError(f"--checkpoint-every {text!r}: expected N (steps) or Ne (epochs)")


@dataclass
class TrainConfig:
    model: str = "thesis-cnn"
    dataset: str = "mnist5k"
    epochs: int | None = None            # None: 1, or as many as --max-steps needs
    max_steps: int | None = None
    batch_size: int = 64                 # global, split over ranks
    optimizer: str = "momentum"          # SGD, momentum 0.9, lr 0.05
    lr: float | None = None              # None: the optimiser's default
    momentum: float | None = None
    weight_decay: float = 0.0
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    lr_step_size: int = 1000
    lr_gamma: float = 0.1
    augment: str = "none"
    sampler: str = "uniform"             # uniform | obs | as (data/samplers.py)
    sampler_min_prob: float = 0.1        # floor: every probability >= this x its uniform value
    obs_pressure: float = 100.0
    obs_recompute_every: int = 2         # epochs between recomputing every sample's loss
    as_beta: int = 10
    as_delta_p: float = 0.9
    as_delta_q: float = 0.1
    as_weighting: str = "importance"     # importance (eq. 64-65, as published) | none
    as_bound: str = "listing"            # listing (Algorithm 1) | eq67 (data/adaptive_sampling.py)
    as_refresh: str = "drawn"            # drawn | every-bin (re-sample every bin before re-estimating P)
    as_refresh_per_bin: int = 0          # every-bin: samples per bin; 0: batch size / bins
    as_counter: str = "batches"          # what --as-beta counts: batches | samples (the listing)
    sync: str = "auto"                   # auto | blocking | overlap | overlap-fc (parallel/)
    fc_replicate: str = "auto"           # overlap-fc: auto | all | none
    bucket_mb: float | str = "auto"      # a cap in MB, or auto (parallel/autotune.py)
    reduction: str = "auto"              # auto | flat | hierarchical (comm/hierarchical.py)
    comm_progress: str = "auto"          # auto | poll | thread | priority (parallel/progress.py)
    sync_bn: bool | None = None          # None: on when the model has BatchNorm
    accumulate: int = 1                  # micro-batches per update (the batch is split)
    grad_dtype: str = "float32"          # float16: compressed gradient Allreduce
    cuda_graph: str = "off"              # on: replay full-batch GPU steps from a CUDA graph
    seed: int = 0
    device: str = "cpu"
    allow_gpu_sharing: bool = False      # more ranks than GPUs on a node
    comm: str = "auto"                   # gradient transport: auto, mpi, nccl, cuda-mpi, staged
    dtype: str = "float32"
    threads: int | None = None
    eval_batch_size: int | None = None   # None: 128 on the CPU, 1000 on a GPU (evaluate.py)
    eval_every: int = 1                  # epochs between test evaluations (0: at the end only)
    eval_every_steps: int = 0            # also every N steps, within epochs too (0: never)
    stop_at_accuracy: float | None = None  # end after an evaluation reaching it (early_stop.py)
    eval_train: bool = False             # also evaluate the whole training set
    log_every: int = 0                   # steps between training metric lines (0: per epoch)
    metrics_out: str | None = None
    save_weights: str | None = None
    checkpoint_dir: str | None = None
    checkpoint_every: str = "1e"         # N steps, or Ne / Nepochs; 0 = only at the end
    keep_checkpoints: int = 3
    resume: bool = False
    trace: str | None = None             # Chrome trace JSON of steps 1..trace_steps
    trace_steps: int = 10
    net_emulate: str | None = None       # "bw=10Gbit,lat=20us": alpha-beta network emulation
    comm_timeout: float | str = "auto"   # auto, auto:FLOOR or seconds (comm/timeout_policy.py)
    check_replicas: int = 0              # compare parameter hashes every N steps (0: never)
    check_collectives: str | None = None  # off | strict | N steps; None: DPTRAIN_CHECK_COLLECTIVES
    skip_nonfinite: int = 0              # steps with a NaN/inf loss to skip before failing
    num_classes: int | None = None       # None: 1 + the largest training label
    quiet: bool = False

    def validate(self) -> "TrainConfig":
        from .validate import check_numbers
        check_numbers(self)                  # type, range, finiteness of every number
        def positive(name, value, strict=True):
            if value is not None and (value <= 0 if strict else value < 0):
                raise UsageError(f"--{name.replace('_', '-')} must be "
                                 f"{'positive' if strict else 'non-negative'}, got {value}")
        positive("batch_size", self.batch_size)
        positive("epochs", self.epochs)
        positive("max_steps", self.max_steps)
        positive("lr", self.lr)
        positive("threads", self.threads)
        positive("eval_batch_size", self.eval_batch_size)
        positive("weight_decay", self.weight_decay, strict=False)
        positive("warmup_steps", self.warmup_steps, strict=False)
        positive("log_every", self.log_every, strict=False)
        positive("eval_every", self.eval_every, strict=False)
        positive("eval_every_steps", self.eval_every_steps, strict=False)
        if self.stop_at_accuracy is not None and self.eval_every == 0 == self.eval_every_steps:
            raise UsageError("--stop-at-accuracy needs evaluations during training: "
                             "--eval-every 0 evaluates at the end only")
        if isinstance(self.bucket_mb, str) and self.bucket_mb != "auto":
            raise UsageError(f"--bucket-mb: expected a number of MB or auto, got {self.bucket_mb!r}")
        if self.bucket_mb != "auto":
            positive("bucket_mb", self.bucket_mb)
        positive("accumulate", self.accumulate)
        timeout_policy.parse(self.comm_timeout)        # auto, auto:FLOOR or seconds
        positive("obs_recompute_every", self.obs_recompute_every, strict=False)
        positive("as_beta", self.as_beta)
        positive("trace_steps", self.trace_steps)
        if not 0 <= self.sampler_min_prob < 1:
            raise UsageError(f"--sampler-min-prob must be in [0, 1), got {self.sampler_min_prob}")
        if self.obs_pressure < 1:
            raise UsageError(f"--obs-pressure must be >= 1, got {self.obs_pressure}")
        for name in ("as_delta_p", "as_delta_q"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"--{name.replace('_', '-')} must be in [0, 1], "
                                 f"got {getattr(self, name)}")
        positive("keep_checkpoints", self.keep_checkpoints)
        positive("check_replicas", self.check_replicas, strict=False)
        positive("skip_nonfinite", self.skip_nonfinite, strict=False)
        parse_interval(self.checkpoint_every)
        if self.check_collectives is not None:
            from ..comm.order_check import parse_mode
            try:
                parse_mode(self.check_collectives)
            except ValueError as exc:
                raise UsageError(f"--check-collectives {exc}") from None
        if self.net_emulate:
            from ..comm.emulated import parse_spec
            try:
                parse_spec(self.net_emulate)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if self.resume and not self.checkpoint_dir:
            raise UsageError("--resume needs --checkpoint-dir (where to look for checkpoints)")
        if (self.sync in SCHEDULES and not schedules.get(self.sync).with_accumulation
                and self.accumulate > 1):                           # (auto leaves it out)
            raise UsageError(f"--sync {self.sync} does not combine with --accumulate (the gathered "
                             "activations are per micro-batch); use overlap")
        if self.accumulate > self.batch_size:
            raise UsageError(f"--accumulate {self.accumulate} exceeds --batch-size {self.batch_size}")
        choices = {"device": ("cpu", "gpu", "auto"), "dtype": ("float32", "float64"),
                   "comm": comm_preferences(),
                   "sync": ("auto",) + tuple(SCHEDULES), "comm_progress": tuple(PROGRESS_MODES),
                   "reduction": ("auto", "flat", "hierarchical"),
                   "fc_replicate": ("auto", "all", "none"),
                   "grad_dtype": ("float32", "float16"), "sampler": ("uniform", "obs", "as"),
                   "as_weighting": ("importance", "none"), "as_bound": ("listing", "eq67"),
                   "as_refresh": ("drawn", "every-bin"), "as_counter": ("batches", "samples"),
                   "cuda_graph": ("off", "on")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                from ..suggest import did_you_mean
                shown = ", ".join(a for a in allowed if a)
                raise UsageError(f"--{key.replace('_', '-')}: unknown value {getattr(self, key)!r}"
                                 f"{did_you_mean(getattr(self, key), allowed)} (choose {shown})")
        if self.as_refresh == "every-bin" and self.as_counter == "samples":
            raise UsageError("--as-refresh every-bin needs --as-counter batches (a refresh every "
                             "beta samples would evaluate more samples than it trains on)")
        return self


FIELD_NAMES = {f.name for f in fields(TrainConfig)}


MAX_CONFIG_BYTES = 1 << 20


def shown_value(value) -> str:
    """A setting as a user writes it: none, on/off for switches, else its text (in --help's
    defaults and in the line naming a setting ranks disagree on)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def load_toml(path: str) -> dict:
    """Read a config file into {field_name: value}; errors name the file and the key."""
    try:
        text = read_config_bytes(path, MAX_CONFIG_BYTES)   # /dev/zero would be read forever
        if len(text) > MAX_CONFIG_BYTES:
            raise UsageError(f"--config {path}: larger than {MAX_CONFIG_BYTES // 1024} KiB, not a config file")
        raw = tomllib.loads(text.decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such config file") from None
    except (NotRegularFile, TimeoutError) as exc:      # a pipe is fine, a silent one is not
        raise UsageError(f"--config {exc}") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read config file ({exc.strerror})") from None
    except RecursionError:
        raise UsageError(f"{path}: malformed TOML (nested too deeply)") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: malformed TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: not a UTF-8 text file (byte {exc.start})") from None
    if "train" in raw and isinstance(raw["train"], dict):     # [train] table is optional
        raw = {**{k: v for k, v in raw.items() if k != "train"}, **raw["train"]}
    out = {}
    for key, value in raw.items():
        name = key.replace("-", "_")
        if name not in FIELD_NAMES:
            raise UsageError(f"{path}: unknown config key {key!r}")
        out[name] = coerce(name, value, f"{path}: config key {key!r}")
    return out


def coerce(name: str, value, where: str):
    """Convert a config value to the field's type (int, float, str or bool)."""
    kind = str(TrainConfig.__dataclass_fields__[name].type).split(" |")[0]
    if value is None:
        return None
    if name == "bucket_mb" and value == "auto":
        return value
    if name == "comm_timeout" and isinstance(value, str):
        return value                         # auto or auto:FLOOR, checked by validate()
    if name in ("checkpoint_every", "check_collectives") and isinstance(value, int) \
            and not isinstance(value, bool):
        value = str(value)                   # checkpoint_every = 500 in a TOML file
    ok = {"int": lambda v: isinstance(v, int) and not isinstance(v, bool),
          "float": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
          "bool": lambda v: isinstance(v, bool),
          "str": lambda v: isinstance(v, str)}[kind]
    if not ok(value):
        raise UsageError(f"{where} must be {'a number' if kind in ('int', 'float') else 'a ' + kind}, "
                         f"got {value!r}")
    return float(value) if kind == "float" else value
