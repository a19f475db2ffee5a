"""``dptrain bench``'s input checked before any measurement: network specs, and batches whose
inputs would not fit in memory (a MemoryError at the first allocation was exit 3)."""
from __future__ import annotations

import math

from ..errors import UsageError


def check_network_specs(args) -> None:
    from ..comm.emulated import parse_spec
    given = [("--net", getattr(args, "net", None))]
    given += [("--net-emulate", s) for s in getattr(args, "net_emulate", None) or []]
    for flag, spec in given:
        if spec:
            try:
                parse_spec(spec)
            except ValueError as exc:
                raise UsageError(str(exc).replace("--net-emulate", flag, 1)) from None


def check_batches_fit(args) -> None:
    """The input batch (and its gradient-sized companions) of every model and batch size the
    bench would run, against the memory available."""
    from ..data.validate import check_fits
    from ..data.errors import DataError
    from ..models.zoo import DEFAULT_INPUT
    sizes = [("--batch-size", args.batch_size)]
    if getattr(args, "batch_sizes", None):
        sizes += [("--batch-sizes", int(v)) for v in str(args.batch_sizes).split(",")
                  if v.strip().isdigit()]
    names = set(str(getattr(args, "model", "") or "").split(","))
    names |= set(str(getattr(args, "models", "") or "").split(","))
    for name in sorted(n for n in names if n in DEFAULT_INPUT):
        for flag, batch in sizes:
            try:
                check_fits(f"{flag} {batch} of {name} inputs "
                           f"({'x'.join(map(str, DEFAULT_INPUT[name]))})",
                           4.0 * 4 * batch * math.prod(DEFAULT_INPUT[name]))
            except DataError as exc:
                raise UsageError(str(exc)) from None


# the modes that build zoo models by name in processes of their own, or need a default shape
ZOO_ONLY_MODES = (("profile", "--profile"), ("predict", "--predict"),
                  ("net_emulate", "--net-emulate"), ("kernel_ops", "--kernel-ops"),
                  ("batch_sizes", "--batch-sizes"))


def check_reference_mode(args):
    """A model of the user's own (FILE.py:NAME) is timed by the single-step bench and the
    weak-scaling bench (--ranks), on the CPU, for the shape --input-shape gives: that shape,
    or None for a zoo model."""
    from ..models.reference import is_reference, parse_shape
    named = str(args.model or "").split(",") + str(getattr(args, "models", "") or "").split(",")
    given = [m for m in named if is_reference(m)]
    if not given:
        if getattr(args, "input_shape", None):
            raise UsageError("--input-shape is for a model of your own (--model FILE.py:NAME); "
                             "a zoo model has its own")
        return None
    for attr, flag in ZOO_ONLY_MODES:
        if getattr(args, attr, None):
            raise UsageError(f"bench {flag}: --model {given[0]} is a model of your own, which "
                             "only the single-step and --ranks benches time (drop the flag)")
    if args.device != "cpu":
        raise UsageError(f"bench --device {args.device}: --model {given[0]} is a model of your "
                         "own, which the single-step bench times on the CPU")
    if not args.input_shape:
        raise UsageError(f"bench --model {given[0]}: give --input-shape CxHxW (a model of your "
                         "own has no default shape)")
    return parse_shape(args.input_shape, "--input-shape")
