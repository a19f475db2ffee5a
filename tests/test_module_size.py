"""No module in dptrain/ over 300 lines: a module that grows past that has taken on a second
job, and is split along it (issue 22 split trainer.py and parallel/data_parallel.py)."""
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dptrain"
LIMIT = 300


def test_no_module_over_300_lines():
    sizes = {str(p.relative_to(PACKAGE.parent)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}
    over = sorted(f"{name} ({n} lines)" for name, n in sizes.items() if n > LIMIT)
    assert not over, "over 300 lines: " + ", ".join(over)
