"""The package's structure: no import cycles and no imports hidden in functions.

The import graph is read from the source with ``ast``: an edge from a module to every fftconv module its
module-level code imports, and to the packages above that module (whose ``__init__`` runs first), except the
packages the importer itself sits in. (Importing any module first in a fresh interpreter starts with
``fftconv/__init__.py``, so only the graph shows whether some other order would break.)
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1] / "fftconv"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def module_level_imports(tree: ast.Module):
    """Import statements that run when the module is imported: not those inside function bodies."""
    stack = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            stack.extend(ast.iter_child_nodes(node))


def function_level_imports(tree: ast.Module):
    for function in ast.walk(tree):
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from (node for node in ast.walk(function) if isinstance(node, (ast.Import, ast.ImportFrom)))


def targets(name: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The fftconv modules an import statement in module ``name`` loads."""
    if isinstance(node, ast.Import):
        found = {alias.name for alias in node.names}
    else:
        if node.level:
            package = name if is_package(name) else name.rpartition(".")[0]
            base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1])
            base = f"{base}.{node.module}" if node.module else base
        else:
            base = node.module or ""
        found = {base} | {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES}
    return {target for target in found if target in MODULES and target not in ancestors(name)}


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        edges = set()
        for node in module_level_imports(ast.parse(path.read_text())):
            for target in targets(name, node):
                edges |= {target, *(a for a in ancestors(target) if a not in ancestors(name) and a != name)}
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_reader_sees_a_cycle():
    """The checker itself can fail: a made-up cycle through a package's __init__ is found."""
    graph = {"p": {"p.a"}, "p.a": {"q"}, "q": {"p"}}
    assert find_cycle(graph) == ["p", "p.a", "q", "p"]
    assert find_cycle({"p": {"p.a"}, "p.a": set()}) is None


def test_the_graph_has_the_expected_edges():
    graph = import_graph()
    assert {"fftconv.algorithms", "fftconv.choose.decide"} <= graph["fftconv.functional"]
    assert "fftconv.algorithms" in graph["fftconv.choose.decide"]
    assert {"fftconv.backends", "fftconv.costs", "fftconv.spectral.layout"} <= graph["fftconv.spectral.plan"]
    assert "fftconv.spectral" not in graph["fftconv.spectral.plan"]  # its own package is already importing


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_fftconv_imports_inside_functions():
    """Function-level imports of the package's own modules are how cycles get hidden; none are needed."""
    hidden = []
    for name, path in MODULES.items():
        for node in function_level_imports(ast.parse(path.read_text())):
            if targets(name, node) or (isinstance(node, ast.ImportFrom) and node.level):
                hidden.append(f"{name}:{node.lineno}")
    assert not hidden, f"imports of fftconv modules inside functions: {hidden}"
