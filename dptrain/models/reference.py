"""Models from the user's code: ``--model FILE.py:NAME`` or ``--model package.module:NAME``.

NAME is a callable ``NAME(input_shape, num_classes)`` (as the zoo's builders, zoo.py) that
returns a list of ``dptrain.nn`` layers or a ``models.Sequential``. A spec is a reference
when it contains ':' (zoo names never do). A FILE.py is resolved against the current
directory and loaded under a private module name of its own (never as ``__main__``);
``package.module`` is imported as usual. A script that passes its own function registers it
(``register``), so that ``load_builder`` never imports the script a second time.

Everything that can go wrong is a ModelError (exit 2): one line naming the file, and the
line in it where there is one; ``detail`` keeps the traceback for --debug.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from ..errors import ModelError

_REGISTRY: dict[str, object] = {}     # spec -> builder registered in this process
_FILES: dict[tuple, object] = {}      # (absolute path, mtime, size) -> loaded module
_DPTRAIN_DIR = str(Path(__file__).resolve().parents[1])


def is_reference(spec) -> bool:
    return isinstance(spec, str) and ":" in spec


def default_spec(builder) -> str:
    """'<file of the builder's module>:<qualname>', else '<module>:<qualname>'."""
    module = sys.modules.get(getattr(builder, "__module__", None) or "")
    qualname = getattr(builder, "__qualname__", None) or getattr(builder, "__name__", None) \
        or type(builder).__name__
    where = getattr(module, "__file__", None) or getattr(builder, "__module__", None) or "builder"
    return f"{where}:{qualname}"


def register(builder, spec: str | None = None) -> str:
    """Make ``builder`` (a callable of this process) the model of ``spec``; returns the spec."""
    if not callable(builder):
        raise TypeError(f"a model builder must be callable, got {type(builder).__name__}")
    spec = spec or default_spec(builder)
    if not is_reference(spec):
        raise ValueError(f"model spec {spec!r} must read FILE.py:NAME or package.module:NAME")
    _REGISTRY[spec] = builder
    return spec


def parse_shape(text: str, flag: str = "--input-shape") -> tuple[int, int, int]:
    """'3x32x32' -> (3, 32, 32); a UsageError naming ``flag`` otherwise."""
    from ..errors import UsageError
    try:
        shape = tuple(int(v) for v in str(text).lower().split("x"))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) <= 0:
        raise UsageError(f"{flag} {text!r}: expected CxHxW, e.g. 3x32x32")
    return shape


def _split(spec: str) -> tuple[str, str]:
    target, _, name = spec.rpartition(":")
    if not target or not name or not all(part.isidentifier() for part in name.split(".")):
        raise ModelError(f"--model {spec}: expected FILE.py:NAME or package.module:NAME "
                         "(NAME: the function that builds the model)")
    return target, name


def _is_file(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or target.startswith(".")


def _user_frame(exc: BaseException, files: tuple[str, ...]):
    """The innermost frame of ``exc``'s traceback in one of ``files``, else the innermost
    outside dptrain and the Python installation; None if there is none."""
    frames = traceback.extract_tb(exc.__traceback__)
    wanted = {os.path.realpath(f) for f in files if f}
    for frame in reversed(frames):
        if os.path.realpath(frame.filename) in wanted:
            return frame
    installed = tuple(os.path.realpath(p) for p in {sys.prefix, sys.base_prefix, _DPTRAIN_DIR})
    for frame in reversed(frames):
        path = os.path.realpath(frame.filename)
        if not frame.filename.startswith("<") and not path.startswith(installed):
            return frame
    return None


def _raised(exc: BaseException, what: str, files=(), fallback: str = "") -> ModelError:
    """'FILE:LINE: WHAT raised Type: message', with the traceback kept for --debug."""
    frame = _user_frame(exc, tuple(files))
    where = f"{frame.filename}:{frame.lineno}" if frame else fallback
    message = str(exc) if not isinstance(exc, SystemExit) else f"exit status {exc.code!r}"
    detail = "".join(traceback.format_exception(exc))
    return ModelError(f"{where}: {what} raised {type(exc).__name__}: {message}", detail)


def _syntax(exc: SyntaxError) -> ModelError:
    where = f"{exc.filename}:{exc.lineno}" if exc.lineno else str(exc.filename)
    return ModelError(f"{where}: syntax error: {exc.msg}",
                      "".join(traceback.format_exception(exc)))


def _load_file(target: str, spec: str):
    path = Path(target)
    shown = target
    if not path.exists():
        raise ModelError(f"--model {spec}: no such model file {shown} "
                         f"(looked in {Path.cwd()})")
    if not path.is_file():
        raise ModelError(f"--model {spec}: {shown} is not a file")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _FILES:
        return _FILES[key]
    digest = hashlib.blake2b(key[0].encode(), digest_size=6).hexdigest()
    name = f"_dptrain_model_{digest}_{len(_FILES)}"     # private: never __main__, never clashes
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ModelError(f"--model {spec}: {shown} cannot be loaded as a Python file")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module              # for dataclasses, pickling, relative lookups
    try:
        module_spec.loader.exec_module(module)
    except SyntaxError as exc:
        del sys.modules[name]
        raise _syntax(exc) from None
    except (Exception, SystemExit) as exc:
        del sys.modules[name]
        raise _raised(exc, "loading the model file", [str(path)], shown) from None
    _FILES[key] = module
    return module


def _import(target: str, spec: str):
    try:
        return importlib.import_module(target)
    except SyntaxError as exc:
        raise _syntax(exc) from None
    except ModuleNotFoundError as exc:
        if exc.name and (target == exc.name or target.startswith(exc.name + ".")):
            raise ModelError(f"--model {spec}: no module named {exc.name!r} (a file is given "
                             "as FILE.py; a module's package must be on PYTHONPATH)",
                             "".join(traceback.format_exception(exc))) from None
        raise _raised(exc, f"importing {target}", (), target) from None
    except (Exception, SystemExit) as exc:
        raise _raised(exc, f"importing {target}", (), target) from None


def load_builder(spec: str):
    """The callable a reference names (a registered one first); ModelError if there is none."""
    if spec in _REGISTRY:
        return _REGISTRY[spec]
    target, name = _split(spec)
    module = _load_file(target, spec) if _is_file(target) else _import(target, spec)
    where = target if _is_file(target) else getattr(module, "__file__", None) or target
    obj = module
    for part in name.split("."):
        if not hasattr(obj, part):
            from ..suggest import did_you_mean
            choices = [n for n in dir(obj) if not n.startswith("_")]
            raise ModelError(f"{where}: no {name!r} in it{did_you_mean(part, choices)} "
                             f"(--model {spec})")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelError(f"{where}: {name} is of type {type(obj).__name__}, not a function "
                         f"{name}(input_shape, num_classes) (--model {spec})")
    return obj


def _source_file(builder) -> str | None:
    code = getattr(builder, "__code__", None) or getattr(getattr(builder, "__call__", None),
                                                          "__code__", None)
    return code.co_filename if code is not None else None


def build_layers(spec: str, input_shape, num_classes: int):
    """Call the builder: a list of layers, or the Sequential it returned. The layers are
    checked against ``input_shape`` (per sample) before any parameter is allocated."""
    from .sequential import Sequential
    if input_shape is None:
        raise ModelError(f"--model {spec}: the input shape is not known; a model of your own "
                         "has no default shape (it comes from --dataset; give --input-shape "
                         "CxHxW to summary and bench)")
    shape = tuple(int(d) for d in input_shape)
    builder = load_builder(spec)
    name = spec.rpartition(":")[2]
    source = _source_file(builder)
    try:
        result = builder(shape, num_classes)
    except (Exception, SystemExit) as exc:
        raise _raised(exc, f"{name}({shape}, {num_classes})", [source] if source else [],
                      spec) from None
    if isinstance(result, Sequential):
        if tuple(result.input_shape) != shape:
            raise ModelError(f"--model {spec}: {name} returned a Sequential for input shape "
                             f"{result.input_shape}, the data has {shape}")
        return result
    if isinstance(result, tuple):
        result = list(result)
    if not isinstance(result, list) or not result:
        shown = "an empty list" if result == [] else f"a {type(result).__name__}"
        raise ModelError(f"--model {spec}: {name} returned {shown}; it must return a list of "
                         "dptrain.nn layers or a dptrain.models.Sequential")
    from ..nn.containers import is_item, spliced
    result = spliced(result)             # nested lists are spliced in, as Sequential does
    for i, layer in enumerate(result):
        if not is_item(layer):
            raise ModelError(f"--model {spec}: {name} returned a list whose item {i} is a "
                             f"{type(layer).__name__}, not a dptrain.nn layer")
    check_fits(spec, result, shape)
    return result


def check_fits(spec: str, layers, input_shape) -> None:
    """Each layer against the shape the one before it gives (the first: the data's)."""
    shape = tuple(input_shape)
    for i, layer in enumerate(layers):
        try:
            shape = tuple(layer.output_shape(shape))
        except (ValueError, TypeError, IndexError) as exc:
            raise ModelError(f"--model {spec}: layer {i} {layer!r} does not fit its input "
                             f"{'x'.join(map(str, shape))}: {exc}",
                             "".join(traceback.format_exception(exc))) from None


def build(spec: str, input_shape, num_classes: int = 10, seed: int = 0, backend=None):
    """The Sequential a reference builds, named by the spec."""
    from .sequential import Sequential
    built = build_layers(spec, input_shape, num_classes)
    if isinstance(built, Sequential):
        built.name = spec
        return built
    try:
        return Sequential(built, tuple(input_shape), seed=seed, name=spec, backend=backend)
    except (Exception, SystemExit) as exc:     # a user layer's initialize()
        raise _raised(exc, "initialising the model", [], spec) from None
