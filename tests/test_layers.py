"""The package's import graph: no module imports another that (directly or through others) imports it back."""

from __future__ import annotations

import ast

from helpers import REPO

PACKAGE = REPO / "src" / "microaction"


def _module_name(path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> package modules it imports (at any depth of the file: deferred imports count)."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                deps.update(t for t in [base, *(f"{base}.{a.name}" for a in node.names)] if t in files)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in files)
        graph[name] = deps - {name}
    return graph


def test_no_import_cycles():
    graph = import_graph()
    # a package's __init__ importing its own modules is how registration works; only cycles leaving a
    # package count, e.g. tasks -> registry -> tasks
    def reaches(start: str, goal: str) -> bool:
        seen, todo = set(), [start]
        while todo:
            m = todo.pop()
            for d in graph.get(m, ()):
                if d == goal:
                    return True
                if d not in seen:
                    seen.add(d)
                    todo.append(d)
        return False

    cycles = [(a, b) for a, deps in graph.items() for b in deps
              if not b.startswith(a + ".") and not a.startswith(b + ".") and reaches(b, a)
              and not (a.rpartition(".")[0] == b or b.rpartition(".")[0] == a)]
    assert not cycles, f"import cycles: {cycles}"


def test_the_low_layers_do_not_import_the_high_ones():
    graph = import_graph()
    high = ("microaction.pipeline", "microaction.tasks", "microaction.callbacks", "microaction.registry")
    for low in ("microaction.labels", "microaction.metrics", "microaction.data", "microaction.models"):
        for module, deps in graph.items():
            if module == low or module.startswith(low + "."):
                assert not [d for d in deps if d.startswith(high)], (module, deps)
