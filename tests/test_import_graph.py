"""The package's import graph: no cycle anywhere, and the engine (bot/) stays free of the outside world.

Every import counts, deferred ones inside functions and `TYPE_CHECKING` blocks included: a cycle hidden
in a function still ties the two modules together. The graph is read with `ast` from the files that
pyproject.toml maps into the `collabbot` package, so no module is imported to check it.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# what bot/ must never import: the web server, the transports, the renderers, the platform SDKs
FORBIDDEN_IN_BOT = ("aiohttp", "collabbot.adapters", "collabbot.scheduler", "collabbot.cards",
                    "lark_oapi", "dingtalk_stream", "wechatpy", "alibabacloud_dingtalk")


def _modules() -> dict[str, Path]:
    """Module name -> file, for every .py file under the folders pyproject.toml maps into `collabbot`."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    dirs = pyproject["tool"]["setuptools"]["package-dir"]
    found: dict[str, Path] = {}
    for package, folder in dirs.items():
        if package.count(".") != 1:
            continue  # a top-level part (collabbot.bot): its sub-folders are walked below
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = list(path.relative_to(ROOT / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([package, *parts])] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import statement in the file, at any depth."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (sub if sub in modules else target), node.lineno


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {t for t, _ in _imports(name, path, modules) if t in modules and t != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph (its modules in order, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle_through_three_modules() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "d": {"a", "c"}}) is None


def test_the_graph_is_read_from_the_real_files() -> None:
    graph = _graph()
    assert "collabbot.bot.app" in graph and "collabbot.storage.models" in graph
    assert "collabbot.bot.context" in graph["collabbot.bot.app"]


def test_deferred_type_only_and_relative_imports_are_seen(tmp_path: Path) -> None:
    source = tmp_path / "mod.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.b import B\n"
                      "def f():\n    from . import c\n    import p.d\n", encoding="utf-8")
    modules = {name: source for name in ("p.a", "p.b", "p.c", "p.d")}
    assert {t for t, _ in _imports("p.a", source, modules)} == {"typing", "p.b", "p.c", "p.d"}


def test_the_package_has_no_import_cycle() -> None:
    cycle = find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("layer, forbidden", [
    ("collabbot.bot", FORBIDDEN_IN_BOT),
    ("collabbot.storage", ("collabbot.bot", "collabbot.adapters", "collabbot.scheduler", "collabbot.cards", "aiohttp")),
])
def test_a_layer_imports_nothing_of_what_sits_above_it(layer: str, forbidden: tuple[str, ...]) -> None:
    modules = _modules()
    bad = [f"{path.relative_to(ROOT)}:{line} imports {target}"
           for name, path in modules.items() if name == layer or name.startswith(layer + ".")
           for target, line in _imports(name, path, modules)
           if any(target == f or target.startswith(f + ".") for f in forbidden)]
    assert not bad, "\n".join(bad)


def test_the_adapter_kit_reaches_the_database_through_the_hub_only() -> None:
    """The kit and every platform's folder (the console's too) get what they need of the database from
    adapters/hub.py: only the hub and the composition root (serve, the command line) import storage."""
    modules = _modules()
    readers = {name for name, path in modules.items() if name.startswith("collabbot.adapters.")
               for target, _ in _imports(name, path, modules) if target.startswith("collabbot.storage")}
    assert readers == {"collabbot.adapters.hub", "collabbot.adapters.serve", "collabbot.adapters.server"}


def test_every_package_folder_is_listed_in_pyproject() -> None:
    """pyproject.toml names its packages one by one: a folder left out would be missing from a wheel."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    listed = set(pyproject["tool"]["setuptools"]["packages"])
    packages = {name for name, path in _modules().items() if path.name == "__init__.py"}
    assert packages - listed == set()
