"""The package's import graph has no circles: one stage imports the one below it, never back."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("dacdr", "features", "models", "flows", "bento")


def module_name(path: Path) -> str:
    """models/baselines/emcdr.py -> models.baselines.emcdr (a package's __init__ -> the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports, function-local imports included (they still tie)."""
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    mods = {module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                deps.add(node.module)
                deps |= {f"{node.module}.{a.name}" for a in node.names}  # `from pkg import module`
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (iterative Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            w = next(children, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    x = stack.pop()
                    on_stack.discard(x)
                    comp.append(x)
                    if x == v:
                        break
                if len(comp) > 1:
                    found.append(sorted(comp))
    return found


def test_cycle_finder_finds_a_planted_circle() -> None:
    """The finder itself: a -> b -> c -> a is one circle; d hangs off it and is not part of it."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]


def test_no_import_circles() -> None:
    """No module of the product imports, even lazily, a module that imports it back."""
    graph = import_graph()
    assert "models.zoo" in graph and "models.train" in graph["models.baselines.stages"]
    assert cycles(graph) == []


# Stages in order: a package may import those before it, never one after it (dacdr is the CLI on top).
LAYERS = ("features", "models", "bento", "flows")


def test_packages_import_downward_only() -> None:
    """features never imports models/bento/flows, models never bento/flows, bento never flows."""
    graph = import_graph()
    upward = sorted(
        (mod, dep)
        for mod, deps in graph.items()
        for dep in deps
        if mod.split(".")[0] in LAYERS
        and dep.split(".")[0] in LAYERS
        and LAYERS.index(dep.split(".")[0]) > LAYERS.index(mod.split(".")[0])
    )
    assert upward == []


def test_trainer_takes_a_built_model() -> None:
    """models.train (the trainer) never imports the zoo; models.run builds from a name and calls it."""
    graph = import_graph()
    assert "models.zoo" not in graph["models.train"]
    assert {"models.zoo", "models.train"} <= graph["models.run"]
