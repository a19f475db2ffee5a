"""Kind 1: ranks given different things must stop with exit 2 naming the field."""
from __future__ import annotations

from pathlib import Path

from .case import DPTRAIN, ERROR_LINE, MPIEXEC, TINY, Case, mpmd
from .fixtures import write_npz

BASE = [*TINY, "--max-steps", "3"]
FLAGS = {   # flag: (value of the other ranks, value of the odd one)
    "--seed": ("0", "7"), "--lr": ("0.05", "0.1"), "--momentum": ("0.9", "0.5"),
    "--accumulate": ("1", "2"), "--augment": ("none", "flip"), "--max-steps": ("3", "4"),
    "--batch-size": ("16", "32"), "--check-collectives": ("off", "strict"),
    "--weight-decay": ("0", "0.001"), "--optimizer": ("momentum", "adam"),
    "--lr-schedule": ("constant", "cosine"),
}


def _with(flag: str, value: str) -> list[str]:
    args = [a for a in BASE]
    if flag in args:
        i = args.index(flag)
        args[i + 1] = value
    else:
        args += [flag, value]
    return args


def _disagree(flag: str, n: int) -> Case:
    same, odd = FLAGS[flag]
    return Case(f"agree{n}{flag}", 1, mpmd((n - 1, _with(flag, same)), (1, _with(flag, odd))),
                rc=2, stderr=ERROR_LINE + f"ranks disagree on {flag}", deadline=40)


def _data_copies(tmp: Path) -> None:
    for node, seed in (("a", 0), ("b", 1)):
        (tmp / node).mkdir()
        write_npz(tmp / node / "d.npz", seed=seed)


def _data_lengths(tmp: Path) -> None:
    for node, n in (("a", 200), ("b", 208)):
        (tmp / node).mkdir()
        write_npz(tmp / node / "d.npz", n=n)


def _on_two_nodes(n: int, setup, name: str) -> Case:
    args = ["--model", "mlp", "--dataset", "npz:d.npz", "--batch-size", "16", "--quiet",
            "--max-steps", "3"]
    return Case(name, 1,
                lambda tmp: mpmd((n - 1, args, str(tmp / "a")), (1, args, str(tmp / "b"))),
                rc=2, stderr=ERROR_LINE + r"ranks disagree on .*d\.npz", setup=setup,
                deadline=40)


def _config_pipe(tmp: Path) -> list[str]:
    from .case import DPTRAIN, MPIEXEC
    return ["bash", "-c", f"exec {MPIEXEC} -n 2 {DPTRAIN} train {' '.join(BASE)} "
            "--config <(printf 'seed = 5\\nlr = 0.02\\n')"]


def cases() -> list[Case]:
    out = [_disagree(flag, n) for n in (2, 4) for flag in FLAGS]
    out += [_on_two_nodes(2, _data_copies, "agree2-data-contents"),
            _on_two_nodes(4, _data_copies, "agree4-data-contents"),
            _on_two_nodes(2, _data_lengths, "agree2-data-length"),
            Case("agree2-config-from-pipe", 1, _config_pipe, rc={0, 2},
                 check=_pipe_outcome, deadline=40),
            Case("agree2-env-check-collectives", 1,
                 [MPIEXEC, "-n", "1", DPTRAIN, "train", *BASE, ":", "-n", "1", "-env",
                  "DPTRAIN_CHECK_COLLECTIVES", "strict", DPTRAIN, "train", *BASE],
                 rc=2, stderr=ERROR_LINE + "ranks disagree on --check-collectives",
                 deadline=40)]
    return out


def _pipe_outcome(tmp: Path, rc: int) -> str | None:
    """A `<(...)` config either reaches every rank (exit 0, the same run) or is refused as
    disagreement (exit 2 naming a key it sets); never exit 0 with two configurations."""
    err = (tmp / "_stderr").read_text(errors="replace")
    if rc == 2 and "ranks disagree on" not in err:
        return "exit 2 without naming the disagreement: " + err.strip()[-160:]
    return None
