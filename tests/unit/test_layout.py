"""The package layout holds: what each package may import, no import cycles (imports inside
functions included), and no class too large to read. docs/design.md explains the layers."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "consuldns"
# What each part may import besides itself ("consuldns" is the package's __init__: the
# version). Top-level modules address, errors and packetio import nothing of consuldns.
ALLOWED = {
    "address": set(),
    "errors": set(),
    "packetio": {"consuldns"},  # its C extension, consuldns._packetio
    "dns": {"consuldns", "errors"},
    "upstream": {"dns", "address", "errors"},
    "consul": {"dns", "upstream", "address", "errors"},
    "serve": {"dns", "upstream", "address", "errors", "packetio"},
    "ops": {"consuldns", "dns", "upstream", "consul", "serve", "address", "errors"},
    "cli": {"consuldns", "dns", "upstream", "ops", "address", "errors", "packetio"},
}
MAX_CLASS_LINES = 250


def modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


def imports_of(tree: ast.Module, name: str) -> set[str]:
    """Every consuldns module imported anywhere in the module (function bodies included)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("consuldns")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "consuldns"):
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
    return found - {name}


MODULES = modules()
GRAPH = {name: imports_of(tree, name) for name, tree in MODULES.items()}


def part(module: str) -> str:
    pieces = module.split(".")
    return pieces[1] if len(pieces) > 1 else "consuldns"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_each_module_imports_only_what_its_package_may(module):
    own = part(module)
    if own not in ALLOWED:
        return  # consuldns/__init__.py and __main__.py
    wrong = {m for m in GRAPH[module] if part(m) != own and part(m) not in ALLOWED[own]}
    assert not wrong, f"{module} ({own}/) may not import {sorted(wrong)}"


def test_no_import_cycles():
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(GRAPH.get(module, ())):
            if state.get(target) == "open":
                cycle = path[path.index(target):] + [target]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(GRAPH):
        if module not in state:
            visit(module, [module])


def test_no_class_is_longer_than_250_lines():
    long = [f"{module}.{node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for module, tree in MODULES.items() for node in ast.walk(tree)
            if isinstance(node, ast.ClassDef)
            and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES]
    assert not long
