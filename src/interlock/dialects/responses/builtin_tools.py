"""The Responses API's built-in tools that the client runs itself: ``shell``
(``shell_call`` items: commands to run), ``apply_patch`` (``apply_patch_call``:
a file to create, update or delete with a diff), ``local_shell``
(``local_shell_call``: one command, Codex's for ``codex-mini``) and
``tool_search`` with ``execution: "client"`` (``tool_search_call``: a search
of the client's deferred tools, with the parameters the client gave it).

OpenAI's models are trained on them; no chat upstream knows them. Each is
offered to the model as a function tool of the same name whose parameters
are the call's action, and a call to that function comes back as the
built-in item, answered or streamed; the items a client sends back (the
call and its output) are the function call and its result. So the OpenAI
Agents SDK's ``ShellTool`` and ``ApplyPatchTool`` and Codex's local shell
work on any model. A call whose arguments are not the action's shape is
the upstream's fault (502), as a ``tool_use`` input that is not an object
is at the Messages edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from interlock.errors import UpstreamProtocolError

__all__ = [
    "BUILTIN_TOOLS",
    "CALL_ITEMS",
    "builtin_call",
    "chat_tool",
    "id_prefix",
    "offered",
    "opened_item",
    "search_tool",
]

JSONDict = dict[str, Any]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# The actions' shapes: their fields and types, what the built-in items
# promise a client. What the values mean (a path that exists, a sane
# timeout) is the client's to judge, as it is with OpenAI's own models.
class ShellAction(_Action):
    commands: list[str]
    timeout_ms: int | None = None
    max_output_length: int | None = None


class PatchOperation(_Action):
    type: Literal["create_file", "update_file", "delete_file"]
    path: str
    diff: str | None = None


class LocalShellAction(_Action):
    command: list[str]
    timeout_ms: int | None = None
    working_directory: str | None = None
    env: dict[str, str] | None = None
    user: str | None = None


_FUNCTIONS: dict[str, JSONDict] = {
    "shell": {
        "name": "shell",
        "description": (
            "Run shell commands in the user's environment, one after another; each "
            "command's stdout, stderr and exit code come back as the result."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "commands": {
                    "type": "array",
                    "items": {"type": "string"},
                    "description": "The commands to run, in order.",
                },
                "timeout_ms": {"type": "integer", "description": "Time limit per command."},
                "max_output_length": {
                    "type": "integer",
                    "description": "Most characters of output to return per command.",
                },
            },
            "required": ["commands"],
        },
    },
    "apply_patch": {
        "name": "apply_patch",
        "description": (
            "Create, update or delete one file. `diff` is the file's content for "
            "create_file and a unified diff of its changes for update_file; "
            "delete_file takes no diff."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "type": {"type": "string", "enum": ["create_file", "update_file", "delete_file"]},
                "path": {"type": "string", "description": "The file's path."},
                "diff": {"type": "string"},
            },
            "required": ["type", "path"],
        },
    },
    "local_shell": {
        "name": "local_shell",
        "description": "Run one command on the user's machine (argv form).",
        "parameters": {
            "type": "object",
            "properties": {
                "command": {"type": "array", "items": {"type": "string"}},
                "timeout_ms": {"type": "integer"},
                "working_directory": {"type": "string"},
                "env": {"type": "object", "additionalProperties": {"type": "string"}},
                "user": {"type": "string"},
            },
            "required": ["command"],
        },
    },
}
# Tool search run by the client: its parameters are the client's (Codex's
# ``query`` and ``limit``); these are what a tool that gives none is offered with.
_SEARCH_FUNCTION: JSONDict = {
    "name": "tool_search",
    "description": (
        "Search the tools that are not loaded yet; the tools found are loaded and "
        "can be called from then on."
    ),
    "parameters": {
        "type": "object",
        "properties": {
            "query": {"type": "string", "description": "What the tool should do."},
            "limit": {"type": "integer", "description": "Most tools to load."},
        },
        "required": ["query"],
    },
}
BUILTIN_TOOLS = frozenset((*_FUNCTIONS, "tool_search"))
# Each tool's call item, and the prefix of its id.
CALL_ITEMS = {
    "shell": "shell_call",
    "apply_patch": "apply_patch_call",
    "local_shell": "local_shell_call",
    "tool_search": "tool_search_call",
}
_ID_PREFIXES = {"shell": "sh", "apply_patch": "apc", "local_shell": "lsh", "tool_search": "tsc"}
_ACTIONS: dict[str, type[_Action]] = {
    "shell": ShellAction,
    "apply_patch": PatchOperation,
    "local_shell": LocalShellAction,
}


def chat_tool(kind: str) -> JSONDict:
    """The function tool a built-in tool is offered to a model as."""
    return {"type": "function", "function": _FUNCTIONS[kind]}


def search_tool(description: str | None, parameters: JSONDict | None) -> JSONDict:
    """The function tool a client's tool search is offered to a model as."""
    function = {
        "name": "tool_search",
        "description": description or _SEARCH_FUNCTION["description"],
        "parameters": parameters or _SEARCH_FUNCTION["parameters"],
    }
    return {"type": "function", "function": function}


def offered(tools: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The built-in tools among a Response's ``tools`` (as its shell echoes
    them); tool search only where the client runs it (OpenAI's is hosted)."""
    return frozenset(
        t["type"]
        for t in tools
        if t.get("type") in BUILTIN_TOOLS
        and (t["type"] != "tool_search" or t.get("execution") == "client")
    )


def id_prefix(kind: str) -> str:
    return _ID_PREFIXES[kind]


def opened_item(kind: str, item_id: str, call_id: str) -> JSONDict:
    """The call as it opens in a stream, before its action is known."""
    item: JSONDict = {"id": item_id, "type": CALL_ITEMS[kind], "call_id": call_id}
    if kind == "tool_search":
        item.update(arguments={}, execution="client")
    elif kind == "apply_patch":
        item["operation"] = None
    else:
        item["action"] = {"commands": []} if kind == "shell" else {"type": "exec", "command": []}
    return {**item, "status": "in_progress"}


def builtin_call(kind: str, item_id: str, call_id: str, arguments: str, status: str) -> JSONDict:
    """The built-in item for the model's call of its function; a 502 where
    the arguments are not the action."""
    if kind == "tool_search":
        return _search_call(item_id, call_id, arguments, status)
    try:
        action = _ACTIONS[kind].model_validate(orjson.loads(arguments or "{}"))
    except (orjson.JSONDecodeError, ValidationError):
        raise UpstreamProtocolError(
            f"the model called the built-in `{kind}` tool with arguments that are not "
            f"its action: {arguments[:200]!r}"
        ) from None
    item: JSONDict = {"id": item_id, "type": CALL_ITEMS[kind], "call_id": call_id}
    if kind == "shell":
        item["action"] = action.model_dump()
        item["environment"] = None
    elif kind == "apply_patch":
        item["operation"] = action.model_dump(exclude_none=True)
    else:
        item["action"] = {"type": "exec", **action.model_dump()}
        item["action"]["env"] = item["action"]["env"] or {}
    # apply_patch_call's status is in_progress or completed; the others add incomplete.
    item["status"] = "completed" if kind == "apply_patch" and status != "in_progress" else status
    return item


def _search_call(item_id: str, call_id: str, arguments: str, status: str) -> JSONDict:
    """A tool search's call: its arguments an object of the tool's parameters,
    which the client defined (so any object)."""
    try:
        said = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        said = None
    if not isinstance(said, dict):
        raise UpstreamProtocolError(
            f"the model called `tool_search` with arguments that are not an object: "
            f"{arguments[:200]!r}"
        )
    return {
        "id": item_id,
        "type": "tool_search_call",
        "call_id": call_id,
        "arguments": said,
        "execution": "client",
        "status": status,
    }
