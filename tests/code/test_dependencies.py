"""Dependencies declared exactly: every third-party import is declared in pyproject.toml, every declared
package is imported, and no module imports a library's private modules (typer._click)."""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("dacdr", "features", "models", "flows", "bento")
OTHER = ("tests", "benchmarks")
# runtime dependencies declared for what they give another package, not imported by ours (none today)
NOT_IMPORTED_OK: set[str] = set()
# private imports still to replace (BentoML's config container has no public accessor for the store path)
KNOWN_PRIVATE = {"bentoml._internal.configuration.containers"}


def _norm(name: str) -> str:
    """A distribution name as pip compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], set[str]]:
    """(runtime dependencies, optional ones of every extra) as normalised distribution names."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {_norm(re.split(r"[\s\[<>=!~;]", r, maxsplit=1)[0]) for r in reqs}

    optional = set().union(*(names(v) for v in project.get("optional-dependencies", {}).values()))
    return names(project["dependencies"]), optional


def _imports(folders: tuple[str, ...]) -> dict[str, set[str]]:
    """Top-level third-party module -> the files importing it (function-local imports included)."""
    local = set(PRODUCT) | set(OTHER) | {p.stem for f in folders for p in (ROOT / f).rglob("*.py")}
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    mods = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    mods = [node.module]
                else:
                    continue
                for mod in mods:
                    top = mod.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local and top != "__future__":
                        found.setdefault(mod, set()).add(str(path.relative_to(ROOT)))
    return found


@functools.cache
def _providers() -> dict[str, list[str]]:
    """Top-level module -> installed distributions (a scan of every installed package: once)."""
    return packages_distributions()


def _dists(module: str) -> set[str]:
    """The installed distributions that provide a top-level module."""
    return {_norm(d) for d in _providers().get(module.split(".")[0], [])}


def test_every_import_is_declared() -> None:
    """Product code imports only runtime or optional dependencies; tests and benchmarks any declared one."""
    runtime, optional = _declared()
    undeclared = {m: sorted(f) for m, f in _imports(PRODUCT).items() if not _dists(m) & (runtime | optional)}
    assert undeclared == {}, f"imported but not declared in pyproject.toml: {undeclared}"
    undeclared = {m: sorted(f) for m, f in _imports(OTHER).items() if not _dists(m) & (runtime | optional)}
    assert undeclared == {}, f"imported by tests/benchmarks but not declared: {undeclared}"


def test_every_runtime_dependency_is_imported() -> None:
    """A runtime dependency nobody imports (safetensors was one) is dead weight in every install."""
    runtime, _ = _declared()
    used = set().union(*(_dists(m) for m in _imports(PRODUCT)))
    assert runtime - used - NOT_IMPORTED_OK == set()


def test_no_private_module_of_a_library_is_imported() -> None:
    """`from typer._click.exceptions import ...` and the like tie us to a library's internals."""
    private = {m: sorted(f) for m, f in _imports(PRODUCT).items()
               if any(part.startswith("_") for part in m.split(".")[1:])}
    assert {m: f for m, f in private.items() if m not in KNOWN_PRIVATE} == {}
