"""What ranks compare at start-up (startup.agree), and the one line that names a difference.

Each rank describes what it was given as ordered (what, value) pairs: the dptrain version and
a digest of its code, the effective configuration (the validated TrainConfig with defaults
resolved), the model it built, its data (data/fingerprint.py) and, on --resume, the state it
restored. Any difference is exit 2 naming the first field that differs and which ranks hold
which value, before anything a difference could break is posted.

Fields that may legitimately differ per rank are left out (``MAY_DIFFER``, with the reason).
"""
from __future__ import annotations

import dataclasses
import hashlib
import zlib
from functools import lru_cache
from pathlib import Path

from .. import __version__
from ..data.fingerprint import dataset_fields
from .config import shown_value

MAY_DIFFER = {
    "threads": "BLAS threads per process, resolved per node from SLURM_CPUS_PER_TASK or "
               "OMP_NUM_THREADS: a node's resources, not the computation",
    "quiet": "only rank 0 prints",
    "device": "heterogeneous nodes may name the same device differently (--device auto on "
              "one, gpu on another); the devices themselves are agreed by train/transport.py, "
              "which refuses a mix of GPU and CPU ranks",
    "allow_gpu_sharing": "a node's own GPU count decides whether its ranks must share",
}
ENV_FLAGS = {"check_collectives": "--check-collectives (or $DPTRAIN_CHECK_COLLECTIVES)"}
CODE_SUFFIXES = (".py", ".cu", ".cuh", ".c", ".h")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A digest of the dptrain package's source files (names relative to the package, and
    contents): equal code installed at different paths gives equal digests."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.blake2b(digest_size=8)
    for path in sorted(p for p in root.rglob("*") if p.suffix in CODE_SUFFIXES and p.is_file()):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def config_fields(cfg) -> list[tuple[str, str]]:
    return [(ENV_FLAGS.get(name, f"--{name.replace('_', '-')}"), shown_value(value))
            for name, value in dataclasses.asdict(cfg).items() if name not in MAY_DIFFER]


def model_fields(model, spec: str) -> list[tuple[str, str]]:
    """The architecture (models/structure.py: layer kinds and sizes, array names, shapes,
    dtypes): the initial values are broadcast from rank 0, but the structures must match for
    that broadcast to mean anything. A builder of the user's that reads the rank, or a model
    file that differs between nodes, is refused here (exit 2), naming the size, else the
    first layer that differs, else the digest of the arrays."""
    from ..models.structure import fingerprint
    fp = fingerprint(model)
    what = f"the model built by --model {spec}"
    return ([(what, f"{len(model.layers)} layers, {model.num_params():,} parameters")]
            + [(f"layer {i} of {what}", text) for i, text in enumerate(fp["layers"])]
            + [(f"the structure of {what}", fp["digest"])])


def resumed_fields(setup) -> list[tuple[str, str]]:
    """The checkpoint each rank restored (each reads its own --checkpoint-dir) and a digest of
    the restored parameters and optimiser state."""
    p = setup.position
    if p.resumed_from is None:
        return []
    crc = 0
    for _, a in sorted(setup.model.state_dict().items()):
        crc = zlib.crc32(a.tobytes(), crc)
    for key, slots in sorted(setup.opt.state_dict()["state"].items(), key=lambda kv: str(kv[0])):
        for name, value in sorted(slots.items()):
            crc = zlib.crc32(repr(value).encode() if name == "t" else value.tobytes(), crc)
    return [("the checkpoint resumed from", f"{Path(p.resumed_from).name} (step {p.step})"),
            ("the state restored from the checkpoint", f"crc32 {crc:08x}")]


def of_rank(setup) -> list[tuple[str, str]]:
    """Everything this rank compares, from its LocalSetup (train/local_setup.py)."""
    return ([("the dptrain version", __version__), ("the dptrain code (its source files)",
                                                    code_digest())]
            + config_fields(setup.cfg) + model_fields(setup.model, setup.cfg.model)
            + dataset_fields(setup.ds) + resumed_fields(setup))


def digest(fields) -> str:
    return hashlib.blake2b(repr(fields).encode(), digest_size=16).hexdigest()


def ranks_text(ranks: list[int]) -> str:
    """'rank 3', 'ranks 0,2' or 'ranks 0-62,64' (runs of three or more as ranges)."""
    parts, i = [], 0
    while i < len(ranks):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] == ranks[j] + 1:
            j += 1
        parts += [f"{ranks[i]}-{ranks[j]}"] if j - i >= 2 else [str(r) for r in ranks[i:j + 1]]
        i = j + 1
    return f"rank{'s' if len(ranks) > 1 else ''} {','.join(parts)}"


def disagreement(per_rank: list[tuple[int, list]]) -> str | None:
    """The line naming the first field on which ranks differ, or None if they all agree:
    'ranks disagree on --seed: rank 0 has 0, rank 1 has 7'; with groups of several ranks
    'ranks disagree on X: ranks 0,2 have A; ranks 1,3 have B'."""
    tables = [(rank, dict(fields)) for rank, fields in sorted(per_rank)]
    order = list(dict.fromkeys(what for _, fields in sorted(per_rank) for what, _ in fields))
    for what in order:
        holders: dict[str, list[int]] = {}
        for rank, table in tables:
            holders.setdefault(table.get(what, "nothing"), []).append(rank)
        if len(holders) > 1:
            grouped = any(len(ranks) > 1 for ranks in holders.values())
            said = [f"{ranks_text(ranks)} {'have' if len(ranks) > 1 else 'has'} {value}"
                    for value, ranks in holders.items()]
            return f"ranks disagree on {what}: " + ("; " if grouped else ", ").join(said)
    return None
