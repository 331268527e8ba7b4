"""The package's shape: no import cycles (imports inside functions included), dependencies down the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import gpuxbuild

ROOT = Path(gpuxbuild.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(module: str) -> set[str]:
    """The gpuxbuild modules `module` imports at run time, wherever the import statement stands."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "gpuxbuild")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            if base.split(".")[0] == "gpuxbuild":
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    found.add(sub if sub in MODULES else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(), str(path)))
    found.discard(module)
    return {m for m in found if m in MODULES}


GRAPH = {m: imports(m) for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_checker_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(GRAPH) == []


# The layers, lowest first: a module imports only modules of lower layers, or of its own package.
# Packages of one rank (registries and remote, build and runtime) never import each other.
LAYERS = {
    "gpuxbuild": 0,  # the core modules at the top of the package: errors, hashing, fsutil, network, ...
    "gpuxbuild.store": 1,
    "gpuxbuild.registries": 2,
    "gpuxbuild.remote": 2,  # the shared remote cache: beside the registries, below build and sync
    "gpuxbuild.project": 3,
    "gpuxbuild.build": 4,
    "gpuxbuild.runtime": 4,
    "gpuxbuild.sync": 5,
    "gpuxbuild.models": 6,
    "gpuxbuild.cli": 7,
}


def layer(module: str) -> tuple[str, int]:
    """(package, rank) of a module: its subpackage of gpuxbuild, or the core."""
    if module == "gpuxbuild.__main__":  # `python -m gpuxbuild` is the command line
        return "gpuxbuild.cli", LAYERS["gpuxbuild.cli"]
    top = ".".join(module.split(".")[:2])
    package = top if top in LAYERS else "gpuxbuild"
    return package, LAYERS[package]


def test_every_subpackage_has_a_layer():
    packages = {".".join(m.split(".")[:2]) for m in MODULES if MODULES[m].name == "__init__.py" and m != "gpuxbuild"}
    assert sorted(packages - set(LAYERS)) == []


def test_dependencies_point_down_the_layers():
    upward = []
    for module, imported in sorted(GRAPH.items()):
        package, rank = layer(module)
        for target in sorted(imported):
            target_package, target_rank = layer(target)
            if target_package != package and target_rank >= rank:
                upward.append(f"{module} -> {target}")
    assert upward == []
