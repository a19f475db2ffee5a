"""Which model wrote a checkpoint or a --save-weights file, and the check that the model a
run builds is that one.

Both files record the model reference (``--model``: a zoo name or FILE.py:NAME) and its
structural fingerprint (models/structure.py). Resume and ``eval`` refuse a different model in
one line that names the first differing layer or array. Files written before fingerprints
were recorded carry none: for those the model name and the array names and shapes are
checked, as before.
"""
from __future__ import annotations

import json

import numpy as np

from ..errors import UsageError
from ..models.structure import fingerprint, is_fingerprint, mismatch

WEIGHTS_META = "meta"          # the one array of a weights file that is not a parameter


def record(model, spec: str) -> dict:
    return {"model": spec, "model_fingerprint": fingerprint(model)}


def weights_meta(model, spec: str) -> np.ndarray:
    return np.frombuffer(json.dumps(record(model, spec)).encode(), dtype=np.uint8)


def read_weights_meta(path, state: dict) -> dict | None:
    """Pop the record from a weights file's arrays; None for a file written without one."""
    raw = state.pop(WEIGHTS_META, None)
    if raw is None:
        return None
    try:
        if raw.dtype != np.uint8 or raw.ndim != 1:
            raise ValueError
        doc = json.loads(raw.tobytes().decode())
        if not isinstance(doc, dict) or not isinstance(doc.get("model"), str) \
                or not is_fingerprint(doc.get("model_fingerprint")):
            raise ValueError
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise UsageError(f"{path}: its {WEIGHTS_META!r} entry is not the model record dptrain "
                         "writes") from None
    return doc


def check_same_model(source: str, doc: dict | None, spec: str, model) -> bool:
    """Refuse (UsageError) a model whose structure differs from the one ``doc`` records;
    True when ``doc`` holds a fingerprint (the model is then checked by structure, and a
    file moved or renamed since is still the same model), False when it has none."""
    saved = (doc or {}).get("model_fingerprint")
    if saved is None:
        return False
    if not is_fingerprint(saved):
        raise UsageError(f"{source}: its model_fingerprint is not what dptrain writes")
    problem = mismatch(source, doc.get("model"), saved, spec, model)
    if problem:
        raise UsageError(problem)
    return True
