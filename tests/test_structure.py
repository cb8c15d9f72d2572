"""The rules of docs/architecture.md that a program can check, on the source of ``jinit/``: no import cycle (imports
inside functions count), no private name taken from another module, and no function longer than its limit."""

from __future__ import annotations

import ast
from pathlib import Path

JINIT = Path(__file__).resolve().parents[1] / "jinit"

#: the longest function allowed, in lines (docstring included): in jinit/sweep/, and anywhere else in jinit/
LIMITS = {"sweep": 120, "other": 200}


def _modules() -> dict[str, ast.Module]:
    out = {}
    for path in sorted(JINIT.rglob("*.py")):
        parts = path.relative_to(JINIT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = ast.parse(path.read_text(), filename=str(path))
    return out


MODULES = _modules()


def _imported(name: str, tree: ast.Module) -> list[tuple[str, str | None, int]]:
    """Every ``(module, imported name or None, line)`` a module imports from jinit, lazy imports included; a
    ``from package import submodule`` counts as the submodule."""
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, None, node.lineno) for a in node.names if a.name.startswith("jinit")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jinit"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append(
                    (sub, None, node.lineno)
                    if sub in MODULES
                    else (node.module, a.name, node.lineno)
                )
    return out


def _graph() -> dict[str, set[str]]:
    graph = {}
    for name, tree in MODULES.items():
        deps = {m for m, _, _ in _imported(name, tree) if m in MODULES and m != name}
        # a package's __init__ re-exporting its submodules is not an import of the package by them
        graph[name] = {d for d in deps if not d.startswith(name + ".")}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_checker_finds_a_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_lazy_imports_included():
    graph = _graph()
    # a submodule of a package does not count its own package's __init__ (Python imports it first anyway)
    graph = {m: {d for d in deps if not m.startswith(d + ".")} for m, deps in graph.items()}
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))
    assert sum(len(d) for d in graph.values()) > 50  # the graph is not empty by mistake


def test_no_private_name_is_imported_from_another_module():
    found = []
    for name, tree in MODULES.items():
        aliases = {}
        for module, imported, line in _imported(name, tree):
            if imported is not None and imported.startswith("_") and not imported.startswith("__"):
                found.append(f"{name}:{line} imports {module}.{imported}")
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("jinit"):
                for a in node.names:
                    if f"{node.module}.{a.name}" in MODULES:
                        aliases[a.asname or a.name] = f"{node.module}.{a.name}"
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                found.append(f"{name}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert found == []


def test_no_function_is_longer_than_its_limit():
    too_long = []
    for name, tree in MODULES.items():
        limit = LIMITS["sweep"] if name.startswith("jinit.sweep") else LIMITS["other"]
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                if n > limit:
                    too_long.append(f"{name}.{node.name}: {n} lines (limit {limit})")
    assert too_long == []
