"""``dptrain data``: data-set tools. ``data convert`` writes any data set dptrain reads as a
memory-mapped ``npy:DIR`` directory (data/convert.py, docs/data.md)."""
from __future__ import annotations

from .cli_parsing import Parser, add_command
from .errors import UsageError


def add_data_command(sub) -> None:
    from .train_flags import add_debug_flag
    d = add_command(sub, "data", "data-set tools: convert a data set to the memory-mapped "
                    "npy:DIR format")
    actions = d.add_subparsers(dest="data_command", required=True, parser_class=Parser,
                               metavar="ACTION")
    c = add_command(actions, "convert", "write a data set (mnist:DIR, fashion-mnist:DIR, "
                    "cifar10:DIR, npz:FILE, mnist5k, synthetic) as an npy:DIR directory")
    c.add_argument("--dataset", required=True, metavar="SPEC", help="the data set to read, "
                   "named as for train")
    c.add_argument("--output", required=True, metavar="DIR",
                   help="the directory to create (refused if it exists)")
    c.add_argument("--num-classes", type=int, metavar="K",
                   help="as given to train (labels are checked against it)")
    add_debug_flag(c)


def run_data(args) -> int:
    from .data import DataError
    from .data.convert import convert
    from .launch_env import launch_size
    if launch_size() > 1:
        raise UsageError("data convert runs as one process, not under mpiexec -n P")
    try:
        print(convert(args.dataset, args.output, args.num_classes))
    except DataError as exc:
        raise UsageError(str(exc)) from None
    return 0
