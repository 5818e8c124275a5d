"""Tools a conversation adds as it goes, and the tool search that loads them.

Codex (0.150 and later) sends some of its tools as an ``additional_tools``
input item (its ``exec`` tool, in a ``functions`` namespace) and keeps its
MCP servers' tools from the model until a search finds them: it offers a
``tool_search`` it runs itself (``execution: "client"``), the model calls
it (a ``tool_search_call`` item), and Codex answers with a
``tool_search_output`` item holding the tools found, callable from then on.

Chat has no tools that appear mid-conversation, so the request's ``tools``
become its own followed by every tool those items add, each once
(``with_added_tools``): the model is offered what OpenAI's would have been
by then, and the Response echoes them, which is how a call to a namespace's
tool it loaded is answered under its namespace. A search's call is an
assistant tool call of ``tool_search``, its output a tool result naming the
tools it loaded. Either the client's search or OpenAI's (replayed from a
conversation held there) reads so.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from interlock.dialects.responses.namespaces import flat_name
from interlock.dialects.responses.schemas import (
    AdditionalTools,
    InputItem,
    NamespaceTool,
    ResponsesRequest,
    Tool,
    ToolSearchCall,
    ToolSearchOutput,
)

__all__ = ["added_tools", "search_call", "search_call_id", "search_result", "with_added_tools"]

JSONDict = dict[str, Any]


def with_added_tools(request: ResponsesRequest, history: Sequence[InputItem]) -> ResponsesRequest:
    """``request`` offering, after its own tools, those its conversation
    (the stored ``history``, then its input) added; as it is where none."""
    added = added_tools([*history, *([] if isinstance(request.input, str) else request.input)])
    if not added:
        return request
    tools = list(request.tools or ())
    seen = {_identity(tool) for tool in tools}
    for tool in added:
        identity = _identity(tool)
        if identity not in seen:
            seen.add(identity)
            tools.append(tool)
    return request.model_copy(update={"tools": tools})


def added_tools(items: Iterable[InputItem]) -> list[Tool]:
    """The tools ``additional_tools`` and ``tool_search_output`` items add, in order."""
    return [
        tool
        for item in items
        if isinstance(item, AdditionalTools | ToolSearchOutput)
        for tool in item.tools
    ]


def _identity(tool: Tool) -> tuple[str, str | None]:
    return tool.type, getattr(tool, "name", None)  # hosted and built-in tools: by type


def search_call_id(item: ToolSearchCall, index: int) -> str:
    """The id a search's call goes to the model with: its own, or (OpenAI's
    server-run searches may have none) one of its place in the input."""
    return item.call_id or item.id or f"tool_search_{index}"


def search_call(item: ToolSearchCall, call_id: str) -> JSONDict:
    """A search's call as the chat tool call of ``tool_search``."""
    arguments = item.arguments if item.arguments is not None else {}
    function = {"name": "tool_search", "arguments": orjson.dumps(arguments).decode()}
    return {"id": call_id, "type": "function", "function": function}


def search_result(item: ToolSearchOutput, searched: str) -> JSONDict:
    """What a search found, as the result of its call (``searched``: the id
    of the last search's call, for an output that names none): the tools it
    loaded, by the name the model calls it by, and what each does."""
    lines = []
    for tool in item.tools:
        if isinstance(tool, NamespaceTool):
            named = ((flat_name(tool.name, inner.name), inner.description) for inner in tool.tools)
            lines += [_line(name, description) for name, description in named]
        else:
            lines.append(_line(getattr(tool, "name", None) or tool.type, _about(tool)))
    said = "Tools loaded:\n" + "\n".join(lines) if lines else "No tools found."
    return {"role": "tool", "tool_call_id": item.call_id or searched, "content": said}


def _about(tool: Tool) -> str | None:
    description = getattr(tool, "description", None)
    return description if isinstance(description, str) else None


def _line(name: str, description: str | None) -> str:
    return f"- {name}: {description}" if description else f"- {name}"
