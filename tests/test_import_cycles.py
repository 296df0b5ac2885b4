"""The import graph of ``src/text4vis``: no circles, and imports at the top of modules.

The graph is built from the source (``ast``), not by importing: every ``import`` and
``from ... import`` counts, at the top of a module or inside a function, with relative imports
(``from . import x``) resolved. A name imported from a lazy package (``from text4vis.data import
open_video``, served by the package's PEP 562 ``__getattr__``) counts as an import of the module
that defines it, read from the package's name -> module table, since that module is what runs.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = "text4vis"
SRC = Path(__file__).resolve().parents[1] / "src"
ROOT = SRC / PACKAGE

# Where an import inside a function is deliberate: the CLI's command modules import the library
# inside run() so that `text4vis --help` stays fast, and the lazy package `__init__` files.
LAZY_BOUNDARY_PREFIXES = (f"{PACKAGE}.commands.",)
# The demo is moving to its own package (src/text4vis_demo/); its style is its own engineer's.
SKIPPED_PREFIXES = (f"{PACKAGE}.demo.", f"{PACKAGE}.demo")


@dataclass(frozen=True)
class ImportEdge:
    """One import statement: ``source`` imports ``target`` at ``line``."""

    source: str
    target: str
    line: int
    in_function: bool


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _source_files() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_package(module: str, modules: dict[str, Path]) -> bool:
    return modules[module].name == "__init__.py"


def _lazy_exports(path: Path, package: str) -> dict[str, str]:
    """The ``name -> module`` table of a lazy ``__init__`` (a module-level dict of strings).

    Values are full module names (``"text4vis.config"``) or submodule names (``"labels"``).
    """
    exports: dict[str, str] = {}
    for node in ast.parse(path.read_text()).body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if not isinstance(value, ast.Dict):
            continue
        for key, item in zip(value.keys, value.values, strict=True):
            name, target = getattr(key, "value", None), getattr(item, "value", None)
            if isinstance(name, str) and isinstance(target, str):
                exports[name] = target if "." in target else f"{package}.{target}"
    return exports


def _resolve_from(module: str, node: ast.ImportFrom, modules: dict[str, Path]) -> str:
    """The absolute module name that ``from <...> import`` names, relative levels resolved."""
    if node.level == 0:
        return node.module or ""
    package = module if _is_package(module, modules) else module.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _function_nodes(tree: ast.Module) -> set[int]:
    """ids of the import nodes that sit inside a function (at any depth)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            for child in ast.walk(node):
                if isinstance(child, ast.Import | ast.ImportFrom):
                    inside.add(id(child))
    return inside


def import_edges() -> list[ImportEdge]:
    """Every import of a text4vis module by a text4vis module, as found in the source."""
    modules = _source_files()
    lazy = {
        name: _lazy_exports(path, name)
        for name, path in modules.items()
        if _is_package(name, modules)
    }
    edges: list[ImportEdge] = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        inside = _function_nodes(tree)

        def add(target: str, node: ast.stmt, module: str = module, inside: set = inside) -> None:
            if target in modules and target != module:
                edges.append(ImportEdge(module, target, node.lineno, id(node) in inside))

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    add(alias.name, node)
            elif isinstance(node, ast.ImportFrom):
                base = _resolve_from(module, node, modules)
                for alias in node.names:
                    submodule = f"{base}.{alias.name}"
                    if submodule in modules:
                        add(submodule, node)
                    elif alias.name in lazy.get(base, {}):
                        add(lazy[base][alias.name], node)
                    else:
                        add(base, node)
    return edges


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    for start in sorted(graph):
        if state.get(start):
            continue
        path = [start]
        stack = [iter(sorted(graph.get(start, ())))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_find_cycle_names_a_cycle_and_accepts_a_tree() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_relative_imports_resolve_and_function_level_imports_are_found() -> None:
    modules = _source_files()
    tree = ast.parse(
        "from . import labels\nfrom ..models import video\n"
        "def f():\n    from .annotations import VideoRecord\n"
    )
    imports = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    resolved = [_resolve_from(f"{PACKAGE}.data.dataset", node, modules) for node in imports]
    assert resolved == [f"{PACKAGE}.data", f"{PACKAGE}.models", f"{PACKAGE}.data.annotations"]
    # In a package's __init__, "." is the package itself.
    assert _resolve_from(f"{PACKAGE}.data", imports[0], modules) == f"{PACKAGE}.data"
    assert _function_nodes(tree) == {id(imports[2])}


def test_the_graph_sees_top_level_and_lazy_package_imports() -> None:
    edges = {(edge.source, edge.target) for edge in import_edges()}
    assert (f"{PACKAGE}.models.video", f"{PACKAGE}.models.temporal") in edges
    # A name served by a lazy package resolves to the module that defines it.
    assert _lazy_exports(ROOT / "data" / "__init__.py", f"{PACKAGE}.data")["read_labels"] == (
        f"{PACKAGE}.data.labels"
    )
    assert (f"{PACKAGE}.commands.predict", f"{PACKAGE}.predict") in edges


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for edge in import_edges():
        graph.setdefault(edge.source, set()).add(edge.target)
    cycle = find_cycle(graph)
    assert cycle is None, (
        "import cycle in src/text4vis: "
        + " -> ".join(cycle or [])
        + "; move the shared piece to the module that owns the concept"
    )


def _allowed_inside_function(module: str) -> bool:
    modules = _source_files()
    return module.startswith(LAZY_BOUNDARY_PREFIXES) or _is_package(module, modules)


def test_text4vis_imports_sit_at_the_top_of_modules() -> None:
    modules = _source_files()
    late = [
        f"{modules[edge.source].relative_to(SRC.parent)}:{edge.line} imports {edge.target}"
        for edge in import_edges()
        if edge.in_function
        and not edge.source.startswith(SKIPPED_PREFIXES)
        and not _allowed_inside_function(edge.source)
    ]
    assert not late, (
        "imports of text4vis modules inside functions (move them to the top of the module; "
        "only the CLI's command modules and lazy __init__ files import late):\n" + "\n".join(late)
    )
