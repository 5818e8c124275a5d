"""Chat's custom (freeform) tools, for upstreams that only call functions.

A custom tool takes one free-form string instead of JSON arguments (Codex's
``apply_patch`` is one, its patch constrained by a Lark grammar). Only
OpenAI's own API knows them (``Provider.takes_custom_tools``). Every other
upstream is sent each custom tool as a function of one string parameter,
``input``, with its grammar, if it has one, in the description: the model
cannot be held to it there, but it can read it. Calls to those functions
come back as custom calls, ``{"type": "custom", "custom": {"name",
"input"}}``, so the edges, the cache and the guardrails only ever see chat's
own shape. In a stream, the input is decoded from the argument JSON as its
pieces arrive (``ArgumentInput``), so it streams as a native one would.

Custom calls in the history (a tool loop's earlier turns) are sent as the
function calls the model would have made.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from typing import Any

import orjson

from interlock.errors import InvalidRequest

__all__ = [
    "INPUT",
    "ArgumentInput",
    "CustomCallChunks",
    "as_custom_calls",
    "as_functions",
    "uses_custom_tools",
]

JSONDict = dict[str, Any]

# The one argument of a custom tool sent as a function.
INPUT = "input"
_OPENING = '{"input":"'
_OPENS = re.compile(r'\s*\{\s*"input"\s*:\s*"')
# A JSON string's body up to where it ends or may be cut: characters other
# than a quote or backslash, and whole escapes.
_STRING_BODY = re.compile(r'(?:[^"\\]+|\\["\\/bfnrt]|\\u[0-9a-fA-F]{4})*')
# A UTF-16 high surrogate's escape: its low half may be in the next piece.
_HIGH_SURROGATE = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}\Z")
_FUNCTION_PARAMETERS: JSONDict = {
    "type": "object",
    "properties": {INPUT: {"type": "string", "description": "The tool's whole input."}},
    "required": [INPUT],
    "additionalProperties": False,
}


def uses_custom_tools(body: JSONDict) -> bool:
    """Whether a chat body offers, forces or replays a custom tool call."""
    # Every chat request to an upstream without custom tools passes here: no generators.
    tools = body.get("tools")
    if tools and any(_is_custom(tool) for tool in tools):
        return True
    if _is_custom(body.get("tool_choice")):
        return True
    for message in body.get("messages") or ():
        calls = message.get("tool_calls")
        if calls and any(_is_custom(call) for call in calls):
            return True
    return False


def _custom_tool_names(body: JSONDict) -> frozenset[str]:
    """The names of the custom tools a chat body offers; a 400 for one
    without a name."""
    tools = enumerate(body.get("tools") or ())
    return frozenset(_name(tool, f"tools[{i}]") for i, tool in tools if _is_custom(tool))


def _name(custom_tool: JSONDict, where: str) -> str:
    custom = custom_tool.get("custom")
    name = custom.get("name") if isinstance(custom, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidRequest(
            f"Missing required parameter: '{where}.custom.name'.",
            param=f"{where}.custom.name",
            code="missing_required_parameter",
        )
    return name


def as_functions(body: JSONDict) -> tuple[JSONDict, frozenset[str]]:
    """``body`` with its custom tools, tool choice and replayed custom calls
    as functions (a new body; the client's is left as it was), and the
    names of those tools, whose calls are to come back as custom ones."""
    names = _custom_tool_names(body)
    out = dict(body)
    if body.get("tools"):
        out["tools"] = [_as_function(tool) if _is_custom(tool) else tool for tool in body["tools"]]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and _is_custom(choice):
        out["tool_choice"] = {
            "type": "function",
            "function": {"name": _name(choice, "tool_choice")},
        }
    if any(message.get("tool_calls") for message in body["messages"]):
        out["messages"] = [_replayed(message) for message in body["messages"]]
    return out, names


def as_custom_calls(answer: JSONDict, names: frozenset[str]) -> JSONDict:
    """A chat completion's calls to ``names`` as custom calls (in place)."""
    for choice in answer.get("choices") or ():
        message = choice.get("message") if isinstance(choice, dict) else None
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if not calls:
            continue
        for position, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and function.get("name") in names:
                custom = {"name": function["name"], "input": _whole_input(function)}
                calls[position] = {"id": call.get("id"), "type": "custom", "custom": custom}
    return answer


class CustomCallChunks:
    """One stream's calls to ``names``, rewritten chunk by chunk as custom
    calls: the first piece names the tool, the next ones carry the input
    decoded so far. A chunk with no tool call passes as its bytes until a
    custom call has started."""

    __slots__ = ("_calls", "_names")

    def __init__(self, names: frozenset[str]):
        self._names = names
        # By (choice, call index): the custom call's input, or None for a function call.
        self._calls: dict[tuple[int, int], ArgumentInput | None] = {}

    async def rewrite(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for raw in chunks:
            yield self.chunk(raw)

    def chunk(self, raw: bytes) -> bytes:
        if b'"tool_calls"' not in raw and not self._open():
            return raw
        chunk = orjson.loads(raw)
        for choice in chunk.get("choices") or ():
            self._choice(choice)
        return orjson.dumps(chunk)

    def _open(self) -> bool:
        return any(call is not None for call in self._calls.values())

    def _choice(self, choice: JSONDict) -> None:
        index = choice.get("index", 0)
        delta = choice.get("delta") or {}
        pieces = []
        for piece in delta.get("tool_calls") or ():
            rewritten = self._piece(index, piece)
            if rewritten is not None:
                pieces.append(rewritten)
        if choice.get("finish_reason"):
            for (owner, position), call in self._calls.items():
                rest = call.finish() if call is not None and owner == index else ""
                if rest:  # what could not be decoded as it came: the input, whole
                    pieces.append({"index": position, "custom": {"input": rest}})
        if pieces:
            delta["tool_calls"] = pieces
            choice["delta"] = delta
        elif "tool_calls" in delta:
            del delta["tool_calls"]

    def _piece(self, index: int, piece: JSONDict) -> JSONDict | None:
        position = piece.get("index", 0)
        key = (index, position)
        function = piece.get("function") or {}
        if key not in self._calls:
            if function.get("name") not in self._names:
                self._calls[key] = None
                return piece
            opening = self._calls[key] = ArgumentInput()
            custom = {"name": function["name"], "input": opening.feed(function.get("arguments"))}
            opened: JSONDict = {"index": position, "type": "custom", "custom": custom}
            if piece.get("id"):
                opened["id"] = piece["id"]
            return opened
        call = self._calls[key]
        if call is None:
            return piece
        text = call.feed(function.get("arguments"))
        return {"index": position, "custom": {"input": text}} if text else None


class ArgumentInput:
    """A custom call's input, decoded from its function's argument JSON
    (``{"input": "..."}``) as the pieces of that JSON arrive: ``feed`` each
    piece, then ``finish``. Only what is not decoded yet is kept (a patch of
    a hundred kilobytes in thousands of pieces is not copied for each).
    Arguments of another shape are read whole at the end (``finish``)."""

    __slots__ = ("_closed", "_opened", "_other", "_raw")

    def __init__(self) -> None:
        # Not decoded yet: the opening so far, then the string's undecoded rest.
        self._raw = ""
        self._opened = False
        self._closed = False
        self._other: list[str] | None = None  # another shape: every piece, read at the end

    def feed(self, piece: Any) -> str:
        """The input's text that ``piece`` (of the arguments) completed."""
        if not isinstance(piece, str) or not piece:
            return ""
        if self._other is not None:
            self._other.append(piece)
            return ""
        if self._closed:
            return ""
        raw = self._raw + piece
        if not self._opened:
            opened = _OPENS.match(raw)
            if opened is None:
                if _OPENING.startswith("".join(raw.split())):
                    self._raw = raw  # may still become the opening
                else:
                    self._other = [raw]
                return ""
            self._opened = True
            raw = raw[opened.end() :]
        return self._decode(raw)

    def finish(self) -> str:
        """What is left of the input once the arguments are whole."""
        if self._other is not None:
            return _input_of("".join(self._other))
        if not self._opened and self._raw:
            return _input_of(self._raw)
        return ""  # decoded as it came; a cut string ends where it was cut

    def _decode(self, raw: str) -> str:
        body = _STRING_BODY.match(raw)
        end = body.end() if body is not None else 0  # it matches empty: never None
        self._closed = end < len(raw) and raw[end] == '"'
        if not self._closed and _HIGH_SURROGATE.search(raw, 0, end):
            end -= 6  # a pair's halves decode together
        self._raw = raw[end:]
        if end <= 0:
            return ""
        try:
            text: str = json.loads(f'"{raw[:end]}"', strict=False)
        except ValueError:
            return ""
        return text


def _is_custom(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "custom"


def _as_function(tool: JSONDict) -> JSONDict:
    custom = tool["custom"]  # named (``custom_tool_names``)
    function: JSONDict = {"name": custom["name"], "parameters": _FUNCTION_PARAMETERS}
    description = _description(custom)
    if description:
        function["description"] = description
    return {"type": "function", "function": function}


def _description(custom: JSONDict) -> str:
    description = custom.get("description") or ""
    fmt = custom.get("format")
    grammar = fmt.get("grammar") if isinstance(fmt, dict) else None
    if isinstance(grammar, dict) and grammar.get("definition"):
        syntax = "Lark grammar" if grammar.get("syntax") == "lark" else "regular expression"
        rule = f"`{INPUT}` must match this {syntax}:\n{grammar['definition']}"
        description = f"{description}\n\n{rule}" if description else rule
    return str(description)


def _replayed(message: JSONDict) -> JSONDict:
    calls = message.get("tool_calls")
    if not calls or not any(_is_custom(call) for call in calls):
        return message
    return {**message, "tool_calls": [_function_call(call) for call in calls]}


def _function_call(call: JSONDict) -> JSONDict:
    if not _is_custom(call):
        return call
    custom = call.get("custom") or {}
    arguments = orjson.dumps({INPUT: custom.get("input", "")}).decode()
    function = {"name": custom.get("name", ""), "arguments": arguments}
    return {"id": call.get("id"), "type": "function", "function": function}


def _whole_input(function: JSONDict) -> str:
    arguments = function.get("arguments")
    return _input_of(arguments) if isinstance(arguments, str) else ""


def _input_of(arguments: str) -> str:
    """The input in whole arguments: ``input``'s string, else the one string
    they hold, else the arguments as the model wrote them."""
    try:
        parsed = json.loads(arguments, strict=False)
    except ValueError:
        return arguments
    if isinstance(parsed, dict):
        found = parsed.get(INPUT)
        if isinstance(found, str):
            return found
        strings = [value for value in parsed.values() if isinstance(value, str)]
        if len(strings) == 1:
            return strings[0]
    return arguments
