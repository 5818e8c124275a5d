"""Namespace tools (``{"type": "namespace", "name", "description", "tools"}``):
function and custom tools grouped under a name, as Codex groups an MCP
server's tools. Chat has no groups, so each tool goes to the model as one
named ``<namespace>__<name>``, and a call to that name comes back as a call
to ``<name>`` with its ``namespace``. A call is matched by the exact name,
so a tool of the client's own whose name holds ``__`` is never split.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["SEPARATOR", "flat_name", "namespaced"]

SEPARATOR = "__"


def flat_name(namespace: str, name: str) -> str:
    return f"{namespace}{SEPARATOR}{name}"


def namespaced(tools: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str]]:
    """Each namespaced tool's flat name -> (namespace, name), from the
    request's tools as the Response echoes them."""
    found: dict[str, tuple[str, str]] = {}
    for tool in tools:
        if tool.get("type") != "namespace":
            continue
        for inner in tool.get("tools") or ():
            found[flat_name(tool["name"], inner["name"])] = (tool["name"], inner["name"])
    return found
