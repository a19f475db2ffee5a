"""Kinds 4, 5 and 6: no poisoned weights, resume as promised, outputs never clobbered."""
from __future__ import annotations

import json
from pathlib import Path

from .case import ERROR_LINE, TINY, Action, Case, mpi, train
from .fixtures import (make_checkpoints, newest_checkpoint, rewrite_checkpoint, run_dptrain,
                       same_weights, weights_finite)


def _poison_outcome(tmp: Path, rc: int) -> str | None:
    weights = tmp / "w.npz"
    if rc == 0:
        return weights_finite(weights) if weights.exists() else "exit 0 without w.npz"
    return "exit 3 but w.npz was written" if weights.exists() else None


def poison_cases() -> list[Case]:
    out = []
    for n in (1, 2):
        for steps in range(1, 7):
            args = ["--model", "mlp", "--dataset", "synthetic:1x28x28:400", "--batch-size", "32",
                    "--optimizer", "sgd", "--lr", "50", "--max-steps", str(steps),
                    "--save-weights", "w.npz", "--quiet"]
            out.append(Case(f"poison{n}-sgd-lr50-steps{steps}", 4,
                            train(*args) if n == 1 else mpi(n, *args), rc={0, 3},
                            check=_poison_outcome, deadline=40))
    return out


RESUME = [*TINY, "--checkpoint-dir", "ck", "--resume", "--max-steps", "8"]


def _truncate_all(tmp: Path) -> None:
    for path in make_checkpoints(tmp).glob("ckpt-*.npz"):
        path.write_bytes(path.read_bytes()[:200])


def _truncate_newest(tmp: Path) -> None:
    path = newest_checkpoint(make_checkpoints(tmp))
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2])


def _drop_optimiser(tmp: Path) -> None:
    path = newest_checkpoint(make_checkpoints(tmp))
    with __import__("numpy").load(path) as z:
        names = [k for k in z.files if k.startswith("opt") or ".v" in k or "/v" in k]
    rewrite_checkpoint(path, edit_arrays=lambda a: [a.pop(k) for k in names])


def _cosine(tmp: Path) -> None:
    make_checkpoints(tmp, steps=4, extra=("--lr-schedule", "cosine"))


def _uninterrupted_and_half(n: int, stop_at: int, total: int = 8):
    """One run of `total` steps (full.npz) that checkpoints at `stop_at`; its later
    checkpoints are removed, so the case resumes that run from step `stop_at`. (Two separate
    fresh runs may plan differently from their timings and agree only up to summation order:
    the promise is about a resume of the same run, docs/guarantees.md.)"""
    def setup(tmp: Path) -> None:
        run_dptrain(tmp, *TINY, "--max-steps", str(total), "--save-weights", "full.npz",
                    "--checkpoint-dir", "ck", "--checkpoint-every", str(stop_at),
                    "--keep-checkpoints", "100", mpi=n)
        for path in (tmp / "ck").glob("ckpt-*.npz"):
            if int(path.stem.split("-")[1]) > stop_at:
                path.unlink()
    return setup


def _resumed_same(stop_at: int):
    def check(tmp: Path, rc: int) -> str | None:
        steps = [r["step"] for r in map(json.loads, (tmp / "r.jsonl").read_text().splitlines())
                 if r.get("type") == "step"]
        if not steps or steps[0] != stop_at + 1:
            return f"the resumed run's first step is {steps[:1]}, not {stop_at + 1}"
        return same_weights(tmp / "full.npz", tmp / "res.npz")
    return check


def resume_cases() -> list[Case]:
    out = [
        Case("resume1-every-checkpoint-truncated", 5, train(*RESUME), rc=2,
             stderr=ERROR_LINE + ".*ck", setup=_truncate_all),
        Case("resume1-newest-truncated-falls-back", 5, train(*RESUME), rc=0,
             stderr=r"ckpt-000000004", setup=_truncate_newest),
        Case("resume1-optimiser-arrays-missing", 5, train(*RESUME), rc=2,
             stderr=ERROR_LINE + ".*incomplete checkpoint", setup=_drop_optimiser),
        Case("resume1-cosine-other-length", 5,
             train(*RESUME, "--lr-schedule", "cosine"), rc=2,
             stderr=ERROR_LINE + ".*cosine", setup=_cosine),
        Case("resume2-cosine-other-length", 5,
             mpi(2, *RESUME, "--lr-schedule", "cosine"), rc=2,
             stderr=ERROR_LINE + ".*cosine", setup=_cosine),
    ]
    for n, stop_at in ((1, 2), (1, 4), (2, 2), (2, 5)):
        argv = [*TINY, "--max-steps", "8", "--checkpoint-dir", "ck", "--resume",
                "--save-weights", "res.npz", "--metrics-out", "r.jsonl", "--log-every", "1"]
        out.append(Case(f"resume{n}-from-step{stop_at}-bitwise", 5,
                        train(*argv) if n == 1 else mpi(n, *argv), rc=0,
                        setup=_uninterrupted_and_half(n, stop_at), deadline=60,
                        check=_resumed_same(stop_at)))
    return out


LIVE = [*TINY, "--max-steps", "3000", "--log-every", "1"]
IN_USE = ERROR_LINE + r".*(in use|running|lock)"


def _jsonl_valid(rel: str):
    def check(tmp: Path, rc: int) -> str | None:
        runs = set()
        for i, line in enumerate((tmp / rel).read_text().splitlines(), 1):
            try:
                runs.add(json.loads(line).get("run_id"))
            except ValueError:
                return f"{rel} line {i} is not JSON"
        return f"{rel} holds {len(runs)} runs" if len(runs) > 1 else None
    return check


def _json_valid(rel: str):
    def check(tmp: Path, rc: int) -> str | None:
        try:
            json.loads((tmp / rel).read_text())
        except (OSError, ValueError) as exc:
            return f"{rel} is not valid JSON: {exc}"
        return None
    return check


def _concurrent(name: str, flag_args: list[str], check, second_extra=()) -> Case:
    first = [*LIVE, "--metrics-out", "m.jsonl", *flag_args] if "--metrics-out" not in flag_args \
        else [*LIVE, *flag_args]
    second = [*TINY, "--max-steps", "3", *flag_args, *second_extra]
    return Case(name, 6, train(*first), rc=0, check=check, deadline=60,
                action=Action(when_file="m.jsonl" if "--metrics-out" not in flag_args
                              else flag_args[1], when_text=r"(.*\n){3}",
                              then=train(*second), then_rc=frozenset({2}), then_stderr=IN_USE))


def _checkpoints_then_dir(tmp: Path) -> None:
    make_checkpoints(tmp)


def output_cases() -> list[Case]:
    return [
        _concurrent("concurrent-metrics-out", ["--metrics-out", "same.jsonl"],
                    _jsonl_valid("same.jsonl")),
        _concurrent("concurrent-trace", ["--trace", "t.json", "--trace-steps", "3"],
                    _json_valid("t.json")),
        _concurrent("concurrent-save-weights", ["--save-weights", "w.npz"],
                    lambda tmp, rc: weights_finite(tmp / "w.npz")),
        _concurrent("concurrent-checkpoint-dir", ["--checkpoint-dir", "live",
                                                  "--checkpoint-every", "50"], None),
        Case("metrics-out-named-like-checkpoint", 6,
             train(*TINY, "--max-steps", "6", "--checkpoint-dir", "ck", "--resume",
                   "--metrics-out", "ck/ckpt-000099999.npz"),
             rc=2, stderr=ERROR_LINE + r".*--metrics-out", setup=_checkpoints_then_dir,
             intact=["ck/ckpt-000000002.npz", "ck/ckpt-000000004.npz"],
             absent=["ck/ckpt-000099999.npz"]),
        Case("metrics-out-of-another-run", 6, train(*TINY, "--max-steps", "2",
                                                     "--metrics-out", "m.jsonl"),
             rc=2, stderr=ERROR_LINE + r".*m\.jsonl",
             setup=lambda tmp: run_dptrain(tmp, *TINY, "--max-steps", "2", "--metrics-out",
                                           "m.jsonl"), intact=["m.jsonl"]),
    ]


def cases() -> list[Case]:
    return poison_cases() + resume_cases() + output_cases()
