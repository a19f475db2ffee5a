"""The runs recorded before the issue 22 redesign (schedules, transports and progress
engines as registered classes, an explicit backend): every schedule x transport stand-in x
progress engine x model, on 1, 2 and 4 ranks, a few float64 steps each.

The recordings (params-P1.npz, params-P2.npz, params-P4.npz, digests.json) were made with
the code as it was at bfdaad2 (2026-12-05), by

    DPTRAIN_RECORD=1 .venv/bin/python -m pytest -q -p no:cacheprovider tests/recordings
    DPTRAIN_RECORD=1 .venv/bin/mpiexec -n 2 .venv/bin/python -m pytest -q --with-mpi \
        -p no:cacheprovider tests/mpi/test_recordings.py          (and -n 4)

and are never re-recorded to make a change pass: a change that moves a recorded number
changes behaviour, which this redesign must not. Each parameter and buffer is kept as a
SHA-256 digest of its float64 bytes (bitwise, on the machine that recorded) and as 32
sampled entries (compared within 1e-12 relative, which other CPUs' rounding meets). Rank 0's
arrays are recorded, and another rank's where they differ from rank 0's (running statistics
without --sync-bn).

mlp-wide (20 M parameters) and vgg-a (224x224 inputs) are left out: their layer kinds are
covered by mlp and vgg-cifar, and a float64 run of either takes minutes on 4 ranks.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RECORDING = os.environ.get("DPTRAIN_RECORD") == "1"
BITWISE = os.environ.get("DPTRAIN_RECORDINGS_BITWISE") == "1"
SAMPLES = 32

DATA = {"mlp": "synthetic:1x8x8:64", "thesis-cnn": "synthetic:1x28x28:48",
        "lenet5": "synthetic:1x28x28:48", "vgg-cifar": "synthetic:3x32x32:40",
        "resnet-small": "synthetic:1x28x28:48", "resnet-20": "synthetic:3x32x32:40"}
SCHEDULES = ("blocking", "overlap", "overlap-fc")


def combo(model, sync, transport="mpi", progress="poll", **extra) -> tuple[str, dict]:
    """(name, run description); ``extra`` are TrainConfig overrides."""
    name = f"{model}/{sync}/{transport}/{progress}"
    if extra:
        name += "/" + ",".join(f"{k}={v}" for k, v in sorted(extra.items()))
    return name, dict(model=model, sync=sync, transport=transport, progress=progress, extra=extra)


def several_ranks() -> dict:
    """The runs recorded on 2 and 4 ranks."""
    runs = [combo(m, s) for m in DATA for s in SCHEDULES]
    runs += [combo("thesis-cnn", s, t) for t in ("staged", "cuda-mpi", "nccl", "emulated")
             for s in SCHEDULES]
    runs += [combo("thesis-cnn", s, "mpi", p) for p in ("thread", "priority")
             for s in ("overlap", "overlap-fc")]
    runs += [combo("resnet-small", "overlap", "mpi", p) for p in ("thread", "priority")]
    runs += [combo("resnet-small", "overlap", t) for t in ("nccl", "staged")]
    runs += [combo("thesis-cnn", "overlap", "nccl", "thread")]
    runs += [combo("thesis-cnn", s, grad_dtype="float16") for s in ("blocking", "overlap")]
    runs += [combo("thesis-cnn", s, accumulate=2) for s in ("blocking", "overlap")]
    runs += [combo("thesis-cnn", s, skip_nonfinite=1) for s in ("blocking", "overlap")]
    runs += [combo("thesis-cnn", "overlap", sync_bn=False),
             combo("thesis-cnn", "overlap-fc", optimizer="adam"),
             combo("mlp", "overlap-fc", fc_replicate="all"),
             combo("mlp", "overlap", batch_size=10),           # slices of unequal sizes
             combo("resnet-small", "overlap-fc", optimizer="adam")]
    return dict(runs)


def one_rank() -> dict:
    """The runs recorded on one process (no MPI: the local communicator)."""
    runs = [combo(m, s, "local") for m in DATA for s in SCHEDULES]
    runs += [combo("thesis-cnn", s, "nccl") for s in SCHEDULES]
    runs += [combo("thesis-cnn", s, "local", grad_dtype="float16") for s in ("blocking", "overlap")]
    runs += [combo("thesis-cnn", "overlap", "local", accumulate=2),
             combo("thesis-cnn", "overlap", "local", skip_nonfinite=1),
             combo("thesis-cnn", "blocking", "local", optimizer="adam")]
    return dict(runs)


def config(run: dict) -> dict:
    """TrainConfig arguments of a run: float64, 3 steps, small buckets (several reductions
    in flight), a fixed bucket size and schedule (no timing-dependent plan)."""
    cfg = dict(model=run["model"], dataset=DATA[run["model"]], dtype="float64", max_steps=3,
               batch_size=8, optimizer="momentum", lr=0.05, quiet=True, threads=1,
               sync=run["sync"], comm_progress=run["progress"], bucket_mb=0.05)
    if run["transport"] == "emulated":
        cfg["net_emulate"] = "bw=100Gbit,lat=1us"
    cfg.update(run["extra"])
    return cfg


def train(run: dict, comm) -> dict:
    from dptrain import backend
    from dptrain.train import TrainConfig, Trainer
    trainer = Trainer(TrainConfig(**config(run)), comm=comm)
    try:
        trainer.run()
        return {k: backend.to_numpy(v).copy() for k, v in trainer.model.state_dict().items()}
    finally:
        backend.set_dtype("float32")


def sample_indices(name: str, size: int) -> np.ndarray:
    if size <= SAMPLES:
        return np.arange(size)
    seed = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "little")
    picked = np.random.default_rng(seed).choice(size - 2, SAMPLES - 2, replace=False) + 1
    return np.sort(np.concatenate([[0, size - 1], picked]))


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a, dtype=np.float64).tobytes()).hexdigest()


def _paths(ranks: int) -> tuple[Path, Path]:
    return HERE / f"params-P{ranks}.npz", HERE / "digests.json"


def record(ranks: int, name: str, states: list) -> None:
    """``states``: every rank's arrays. Rank 0's are kept; another rank's only where they
    differ from rank 0's (running statistics without --sync-bn are per rank)."""
    values_path, digests_path = _paths(ranks)
    values = dict(np.load(values_path)) if values_path.exists() else {}
    digests = json.loads(digests_path.read_text()) if digests_path.exists() else {}
    for rank, state in enumerate(states):
        keep = {k: v for k, v in state.items()
                if rank == 0 or digest(v) != digest(states[0][k])}
        if not keep:
            continue
        key = name if rank == 0 else f"{name}|rank{rank}"
        for k, v in keep.items():
            values[f"{key}|{k}"] = v.reshape(-1)[sample_indices(k, v.size)]
        digests[f"P{ranks}:{key}"] = {k: [digest(v), list(v.shape)] for k, v in sorted(keep.items())}
    np.savez_compressed(values_path, **values)
    digests_path.write_text(json.dumps(digests, indent=0, sort_keys=True) + "\n")


def compare(ranks: int, name: str, state: dict, rank: int = 0) -> None:
    """This rank's arrays within 1e-12 relative of their recording (bitwise too with
    DPTRAIN_RECORDINGS_BITWISE=1)."""
    values_path, digests_path = _paths(ranks)
    values = np.load(values_path)
    digests = json.loads(digests_path.read_text())
    wanted = dict(digests[f"P{ranks}:{name}"])
    own = f"{name}|rank{rank}"
    wanted.update({k: v + [own] for k, v in digests.get(f"P{ranks}:{own}", {}).items()})
    assert sorted(state) == sorted(wanted), f"{name}: arrays differ from the recording"
    for k, v in state.items():
        recorded_as = wanted[k][2] if len(wanted[k]) > 2 else name
        assert list(v.shape) == wanted[k][1], f"{name}: {k} has shape {v.shape}, recorded {wanted[k][1]}"
        want = values[f"{recorded_as}|{k}"]
        got = v.reshape(-1)[sample_indices(k, v.size)]
        scale = float(np.abs(want).max()) if want.size else 0.0
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * scale,
                                   err_msg=f"{name} on rank {rank}: {k}")
        if BITWISE:
            assert digest(v) == wanted[k][0], \
                f"{name} on rank {rank}: {k} is not bitwise equal to its recording"
