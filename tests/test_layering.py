"""ADR 0009, checked: the HTTP edges hand requests to the pipeline and
import nothing from the router or the adapters, so no edge can route or
call a model around the pipeline's stages."""

from __future__ import annotations

import ast
from pathlib import Path

import interlock

PACKAGE = Path(interlock.__file__).parent
FORBIDDEN = ("interlock.routing", "interlock.providers")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_the_edges_import_nothing_from_routing_or_providers() -> None:
    edges = sorted((PACKAGE / "api").glob("*.py")) + sorted((PACKAGE / "dialects").rglob("*.py"))
    assert edges
    offending = {
        f"{path.name}: {name}"
        for path in edges
        for name in _imports(path)
        if name.startswith(FORBIDDEN)
    }
    assert offending == set()
