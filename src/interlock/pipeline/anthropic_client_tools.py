"""Anthropic's schema-less client tools as functions, for models that are not
Anthropic's (ADR 0030).

``bash_*``, ``text_editor_*`` and ``memory_*`` are tools the client runs; Anthropic's API
knows their input schemas, so a request names them by type alone. Another
model can call them once it is given the schema: each becomes a function of
the client's name for it (``bash``, ``str_replace_based_edit_tool``,
``str_replace_editor``, ``memory``) whose parameters are the input Anthropic documents
for that version. A call comes back as a ``tool_use`` of that name with that
input, which the client runs as it would Claude's.

Anthropic's server tools and the client tools whose schemas are not written
here (``computer_*``) are left in the marker: the web search is
the gateway's to run (``web_search.py``), the rest still need an Anthropic
deployment.
"""

from __future__ import annotations

from typing import Any

from interlock.pipeline.request import JSONDict

__all__ = ["as_functions"]

_BASH: JSONDict = {
    "description": (
        "Run a command in a persistent bash shell on the user's machine and get its output. "
        "Set restart to true, without a command, to start a fresh shell."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "command": {"type": "string", "description": "The command to run."},
            "restart": {"type": "boolean", "description": "Start a fresh shell instead."},
        },
    },
}


def _editor(commands: list[str]) -> JSONDict:
    return {
        "description": (
            "View, create and edit text files on the user's machine. view: a file's lines "
            "numbered (or a directory's entries), view_range [first, last] for some lines, "
            "-1 as last for the end. create: a new file of file_text. str_replace: replace "
            "old_str, which must occur exactly once, with new_str. insert: new_str after "
            "line insert_line (0: at the top)."
            + (" undo_edit: revert the file's last edit." if "undo_edit" in commands else "")
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "enum": commands},
                "path": {"type": "string", "description": "An absolute path."},
                "file_text": {"type": "string"},
                "old_str": {"type": "string"},
                "new_str": {"type": "string"},
                "insert_line": {"type": "integer"},
                "view_range": {"type": "array", "items": {"type": "integer"}},
            },
            "required": ["command", "path"],
        },
    }


# Anthropic adds its own instructions to a request with the memory tool; the
# description says as much to other models.
_MEMORY: JSONDict = {
    "description": (
        "Your memory: files under /memories that outlast this conversation. View the "
        "directory before you start a task and keep what you learn there as you go. "
        "view: a file's lines (view_range [first, last]) or a directory's entries. create: "
        "a file of file_text. str_replace: replace old_str, which must occur exactly once, "
        "with new_str. insert: insert_text after line insert_line. delete: a file or "
        "directory. rename: old_path to new_path."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "command": {
                "type": "string",
                "enum": ["view", "create", "str_replace", "insert", "delete", "rename"],
            },
            "path": {"type": "string"},
            "view_range": {"type": "array", "items": {"type": "integer"}},
            "file_text": {"type": "string"},
            "old_str": {"type": "string"},
            "new_str": {"type": "string"},
            "insert_line": {"type": "integer"},
            "insert_text": {"type": "string"},
            "old_path": {"type": "string"},
            "new_path": {"type": "string"},
        },
        "required": ["command"],
    },
}

_EDITS = ["view", "create", "str_replace", "insert"]
# Each version's schema; the client names the tool (Anthropic fixes the name
# per version, and refuses another).
_SCHEMAS: dict[str, JSONDict] = {
    "bash_20241022": _BASH,
    "bash_20250124": _BASH,
    "text_editor_20241022": _editor([*_EDITS, "undo_edit"]),
    "text_editor_20250124": _editor([*_EDITS, "undo_edit"]),
    "text_editor_20250429": _editor(_EDITS),
    "text_editor_20250728": _editor(_EDITS),
    "memory_20250818": _MEMORY,
}


def as_functions(tools: list[Any]) -> tuple[list[JSONDict], list[Any]]:
    """Anthropic's tools as chat functions where their schemas are known, and
    the ones left (server tools, and client tools of other types)."""
    functions: list[JSONDict] = []
    left: list[Any] = []
    for tool in tools:
        schema = _SCHEMAS.get(str(tool.get("type"))) if isinstance(tool, dict) else None
        if schema is None:
            left.append(tool)
            continue
        functions.append({"type": "function", "function": {"name": tool["name"], **schema}})
    return functions, left
