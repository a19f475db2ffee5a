"""The public Python API (docs/api.md) stays importable and documented: every name in the
public modules' ``__all__`` exists, has its own docstring and is listed in docs/api.md,
docs/api.md lists nothing that is not exported, and every public class or function of those
modules is in ``__all__``; ``import dptrain`` loads neither NumPy nor MPI."""
import importlib
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

PUBLIC_MODULES = ["dptrain", "dptrain.nn", "dptrain.models", "dptrain.optim", "dptrain.data"]
API_DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def documented_names() -> dict[str, set]:
    """{module: names} from docs/api.md's table rows: | `module` | `Name`, `Name`, ... |"""
    table = {}
    for line in API_DOC.read_text().splitlines():
        m = re.match(r"\|\s*`(dptrain(?:\.\w+)?)`\s*\|(.*?)\|", line)
        if m:
            table.setdefault(m.group(1), set()).update(re.findall(r"`(\w+)`", m.group(2)))
    return table


def own_doc(obj) -> str:
    """The object's own docstring (a class does not inherit one); a constant (a dict or a
    tuple of names) counts as documented when its module's docstring or docs/api.md names it."""
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return (doc or "").strip()


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_exported_name_exists_and_has_a_docstring(module_name):
    module = importlib.import_module(module_name)
    assert module.__doc__ and module.__doc__.strip(), module_name
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{module_name}.__all__ names what it lacks: {missing}"
    undocumented = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isfunction(obj) or inspect.ismodule(obj):
            if not own_doc(obj):
                undocumented.append(name)
        elif name not in module.__doc__ and f"`{name}`" not in API_DOC.read_text():
            undocumented.append(name)
    assert not undocumented, f"{module_name}: no docstring for {undocumented}"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_docs_list_exactly_the_exported_names(module_name):
    module = importlib.import_module(module_name)
    listed = documented_names().get(module_name, set())
    assert set(module.__all__) - listed == set(), f"exported, not in docs/api.md ({module_name})"
    assert listed - set(module.__all__) == set(), f"in docs/api.md, not exported ({module_name})"


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_all_is_complete(module_name):
    """Every class or function the module offers under a public name is in ``__all__``."""
    module = importlib.import_module(module_name)
    offered = [name for name, obj in vars(module).items()
               if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
               and getattr(obj, "__module__", "").startswith("dptrain")]
    assert set(offered) - set(module.__all__) == set(), module_name
    if module_name == "dptrain":            # its names are lazy: __all__ is what it offers
        assert set(module.__all__) <= set(dir(module))


def test_import_dptrain_loads_neither_numpy_nor_mpi():
    """The command line installs its signal handlers after ``import dptrain`` and before the
    heavy imports (cli.py); the lazy names must not undo that."""
    code = ("import sys, dptrain; names = dptrain.__all__; dir(dptrain); "
            "print(sorted(m for m in ('numpy', 'mpi4py', 'dptrain.api') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_lazy_names_resolve_to_the_api():
    import dptrain
    from dptrain import api
    assert dptrain.fit is api.fit and dptrain.TrainResult is api.TrainResult
    assert issubclass(dptrain.JobEnded, SystemExit)
    assert dptrain.nn.Dense is importlib.import_module("dptrain.nn").Dense
    with pytest.raises(AttributeError):
        dptrain.no_such_name


def test_fit_stays_the_function_once_the_train_subpackage_is_imported():
    """``dptrain.train`` is the subpackage dptrain/train/: Python binds it on the package when
    any of its modules is imported, which is why the entry point is ``fit``."""
    code = ("import dptrain, dptrain.train.trainer, inspect; "
            "print(inspect.isfunction(dptrain.fit), inspect.ismodule(dptrain.train))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True"], out.stdout


def test_the_example_in_the_docs_is_the_example_that_runs():
    """docs/api.md shows examples/train_mine.py as it is (tests/test_api_example.py runs it)."""
    example = (API_DOC.parents[1] / "examples" / "train_mine.py").read_text()
    assert f"```python\n{example}```\n" in API_DOC.read_text()
