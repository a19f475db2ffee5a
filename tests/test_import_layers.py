"""The low packages import nothing from above them: nn/ (layers) from none of optim/, comm/
or the packages that assemble training; optim/ and comm/ from none of the latter. A model,
an optimiser or a communicator can so be built and tested alone, and a backend reaches
layers through the model (model.backend), not through an upward import."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dptrain"
ASSEMBLY = {"models", "data", "parallel", "train", "bench", "cli", "train_flags"}
FORBIDDEN = {"nn": ASSEMBLY | {"optim", "comm"}, "optim": ASSEMBLY | {"comm"}, "comm": ASSEMBLY}


def imported_packages(path: Path) -> set:
    """The first component under dptrain of every module ``path`` imports (in functions too)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - (node.level - 1)]) if node.level else []
            parts = base + (node.module.split(".") if node.module else [])
            if parts[1:2]:
                found.add(parts[1])
            else:                                   # from dptrain import x / from .. import x
                found |= {a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names
                      if a.name.startswith("dptrain.")}
    return found


@pytest.mark.parametrize("low", sorted(FORBIDDEN))
def test_low_packages_import_nothing_from_above(low):
    upward = {str(p.relative_to(PACKAGE)): sorted(imported_packages(p) & FORBIDDEN[low])
              for p in sorted((PACKAGE / low).rglob("*.py"))}
    assert {p: up for p, up in upward.items() if up} == {}
