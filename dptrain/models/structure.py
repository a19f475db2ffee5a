"""A model's structural fingerprint: what it is built of, not what values it holds.

    fingerprint(model) -> {"digest", "layers", "arrays", "params", "nesting"}

``layers``: each layer's description in execution order (``repr``: kind and sizes, e.g.
"Conv2D(3->16, 3x3, stride 1, pad 1)"), ``arrays``: [name, shape, dtype] of every parameter
and buffer, ``nesting``: how containers nest the layers (``model.layout()``, when the model
has one). Checkpoints and --save-weights files record it; resume and ``eval`` compare it with
the model they build (``difference``), and the ranks compare its digest at start-up
(train/fingerprint.py), so two models that differ in any layer or array are never mixed.
"""
from __future__ import annotations

import hashlib
import json


def _describe(layer) -> str:
    text = repr(layer)
    return type(layer).__name__ if " at 0x" in text else text    # object's repr: an address


def fingerprint(model) -> dict:
    arrays = [[name, [int(d) for d in a.shape], str(a.dtype)]
              for name, a in list(model.named_params()) + list(model.named_buffers())]
    # the leaf kinds and how residual blocks nest them (Sequential.layout: no object addresses)
    nesting = model.layout() if hasattr(model, "layout") else None
    doc = {"layers": [_describe(layer) for layer in model.layers], "arrays": arrays,
           "params": int(model.num_params()),
           "nesting": nesting}
    doc["digest"] = hashlib.blake2b(json.dumps(doc, sort_keys=True).encode(),
                                    digest_size=8).hexdigest()
    return doc


def is_fingerprint(doc) -> bool:
    """What fingerprint() writes (a crafted checkpoint may hold anything)."""
    return (isinstance(doc, dict) and isinstance(doc.get("digest"), str)
            and isinstance(doc.get("layers"), list)
            and all(isinstance(t, str) for t in doc["layers"])
            and isinstance(doc.get("arrays"), list)
            and all(isinstance(a, list) and len(a) == 3 and isinstance(a[0], str)
                    and isinstance(a[1], list) and all(isinstance(d, int) for d in a[1])
                    and isinstance(a[2], str) for a in doc["arrays"])
            and isinstance(doc.get("params"), int) and not isinstance(doc.get("params"), bool))


def size_text(params: int) -> str:
    return f"{params / 1e6:.2f} M parameters" if params >= 10_000 else f"{params:,} parameters"


def _shape(shape) -> str:
    return "x".join(map(str, shape)) or "scalar"


def difference(there: dict, here: dict, compare_dtype: bool = True) -> str | None:
    """The first thing in which two fingerprints differ, as 'X there, Y here'; None if the
    structures are the same (``compare_dtype``: the arrays' dtypes count too)."""
    for i, (a, b) in enumerate(zip(there["layers"], here["layers"])):
        if a != b:
            return f"layer {i} is {a} there, {b} here"
    if len(there["layers"]) != len(here["layers"]):
        longer, which = (there, "there") if len(there["layers"]) > len(here["layers"]) else (here, "here")
        i = min(len(there["layers"]), len(here["layers"]))
        return (f"{len(there['layers'])} layers there, {len(here['layers'])} here "
                f"(layer {i} {longer['layers'][i]} only {which})")
    own = {name: (shape, dtype) for name, shape, dtype in here["arrays"]}
    saved = {name: (shape, dtype) for name, shape, dtype in there["arrays"]}
    for name, (shape, dtype) in saved.items():
        if name not in own:
            return f"array {name} ({_shape(shape)}) is there, not here"
        if own[name][0] != shape:
            return f"array {name} is {_shape(shape)} there, {_shape(own[name][0])} here"
        if compare_dtype and own[name][1] != dtype:
            return f"array {name} is {dtype} there, {own[name][1]} here"
    for name, (shape, _) in own.items():
        if name not in saved:
            return f"array {name} ({_shape(shape)}) is here, not there"
    if there.get("nesting") != here.get("nesting"):
        return f"the layers nest differently: {there.get('nesting')} there, {here.get('nesting')} here"
    return None


def mismatch(source: str, saved_model, saved_fp: dict, spec: str, model,
             compare_dtype: bool = False) -> str | None:
    """'SOURCE: written by model M (N parameters); this run builds S: <difference>', or None
    when ``model`` has the structure ``saved_fp`` records."""
    here = fingerprint(model)
    if saved_fp.get("digest") == here["digest"]:
        return None
    diff = difference(saved_fp, here, compare_dtype)
    if diff is None:
        return None
    return (f"{source}: written by model {saved_model} ({size_text(saved_fp['params'])}); "
            f"this run builds {spec} ({size_text(here['params'])}): {diff}")
