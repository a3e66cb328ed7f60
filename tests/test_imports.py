"""No import cycle under orderwatch_dagster/, and no source folder imports another.

The import graph is read statically (ast) from every module, with the imports inside functions
too: a lazy import that closes a cycle is still a cycle in the design, only a hidden one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "orderwatch_dagster"


def _module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """(imported module, name imported from it or None) for every import statement."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield base, alias.name


def _ancestors(module: str) -> list[str]:
    """`a.b.c` -> `a.b`, `a` (the packages whose `__init__` runs before it)."""
    parts = module.split(".")
    return [".".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports.

    Importing `x.y.z` also runs the `__init__` of `x.y` and `x`: those are edges too, except to
    the importer's own ancestors (already initialising when the importer runs).
    """
    paths = {_module_name(root, path): path for path in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in paths}
    for name, path in paths.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        own = {name, *_ancestors(name)}
        for target, item in _imports(tree, name, path.name == "__init__.py"):
            submodule = f"{target}.{item}" if item else None
            imported = submodule if submodule in paths else target
            if imported not in paths:
                continue
            for module in (imported, *_ancestors(imported)):
                if module in paths and module not in own:
                    graph[name].add(module)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module, or a module importing itself
    (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_under_orderwatch_dagster() -> None:
    graph = import_graph(PACKAGE)
    assert len(graph) > 40  # every module was read
    assert "orderwatch_dagster.lib.feeds" in graph["orderwatch_dagster.lib.parsers"]
    assert cycles(graph) == []


def test_source_folders_do_not_import_each_other() -> None:
    prefix = "orderwatch_dagster.defs.ingest."
    graph = import_graph(PACKAGE)
    for module, targets in graph.items():
        if not module.startswith(prefix) or module.count(".") < 4:
            continue
        folder = module.split(".")[3]
        for target in targets:
            if target.startswith(prefix) and target.count(".") >= 4:
                assert target.split(".")[3] == folder, f"{module} imports {target}"


def test_a_cycle_is_found_even_through_a_function_level_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from .. import a\n    return a\n")
    (package / "c.py").write_text("import pkg.a\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.sub.b"]]


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path) -> None:
    """`pkg.a` imports `pkg.sub.b`, which runs `pkg/sub/__init__.py`, which imports `pkg.a`."""
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from pkg import a\n")
    (package / "a.py").write_text("from pkg.sub.b import f\n")
    (package / "sub" / "b.py").write_text("def f():\n    return 1\n")
    assert cycles(import_graph(package)) == [["pkg.a", "pkg.sub"]]


def feed_name_comparisons(root: Path, feeds: set[str]) -> list[str]:
    """`x == "<feed>"` (or `!=`, `in (...)`) anywhere under `root`: feed-specific behaviour
    belongs on the feed's spec or in its connector's tables, not in a branch on its name."""
    hits = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Compare):
                continue
            operands = [node.left, *node.comparators]
            names = {
                c.value
                for operand in operands
                for c in ast.walk(operand)
                if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
            if names & feeds:
                hits.append(f"{path.relative_to(root.parent)}:{node.lineno}")
    return hits


def test_ingest_code_never_branches_on_a_feed_name() -> None:
    from orderwatch_dagster.lib.feeds import FEEDS

    feeds = set(FEEDS)
    for folder in (PACKAGE / "defs" / "ingest", PACKAGE / "lib"):
        assert feed_name_comparisons(folder, feeds) == []


def test_a_branch_on_a_feed_name_is_found(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "a.py").write_text('def f(feed):\n    return feed == "returns"\n')
    assert feed_name_comparisons(package, {"returns"}) == ["pkg/a.py:2"]
