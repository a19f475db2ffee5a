"""No import circles in dptrain/ (module-level or inside functions): a circle means two
modules each need the other, so neither can be understood, tested or replaced alone.

`from . import x` counts as importing module x. Any circle fails this test, naming its
modules. (The last one, between the CUDA kernels' sources and compile.py, went in issue 22:
the sources are handed their launcher by the caller and take the reduction layout from
kernels_cuda/grid.py.)"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dptrain"


def module_names() -> dict:
    names = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def import_graph(names: dict) -> dict:
    graph = {m: set() for m in names}
    for module, path in names.items():
        package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)] if node.level else []
                target = ".".join(base + [node.module] if node.module else base)
                subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in names]
                targets = subs if len(subs) == len(node.names) else [target, *subs]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            graph[module] |= {t for t in targets if t in names and t != module}
    return graph


def circles(graph: dict) -> list[set]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(component)
    return found


def test_the_finder_sees_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert circles(graph) == [{"a", "b", "c"}]


def test_no_import_circles():
    found = [sorted(c) for c in circles(import_graph(module_names()))]
    assert not found, f"import circles: {found}"
