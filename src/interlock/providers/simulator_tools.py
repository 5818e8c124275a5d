"""The simulator's answers decided by the request's shape instead of
generated prose: tool calls, tool results read back, JSON output.

The rules are the ones the test suite's fake upstreams follow (so one test
can run over all of them), applied in this order:

1. the last turn holds tool results: the text ``Tool said: `` and the
   results' texts joined with ``; ``;
2. ``tools`` (or legacy ``functions``) and a tool choice other than ``none``:
   call the named tool, else the first; if the last user text has the word
   "parallel", the first two in one answer. Arguments are sampled from the
   tool's JSON Schema (``sample_json``);
3. ``response_format``: ``{"answer": "Paris"}`` for ``json_object``, JSON
   sampled from the schema for ``json_schema``.

Anything else is plain text, which the simulator generates as before.
Deterministic except for tool-call ids (``call_<hex>``, fresh per answer).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import orjson

from interlock.providers.base import JSONDict
from interlock.providers.openai_request import (
    function_tools,
    new_tool_call_id,
    response_format,
    tool_choice,
    tool_result_text,
)
from interlock.providers.shapes import tool_call, tool_call_arguments_piece, tool_call_opened
from interlock.tokens import message_text

__all__ = ["ScriptedAnswer", "sample_json", "scripted_answer"]

# Leaf values of sampled JSON, by schema type.
_LEAVES: dict[str, Any] = {
    "string": "Paris",
    "integer": 3,
    "number": 1.5,
    "boolean": True,
    "null": None,
}
# Bounds on what a schema can make the sampler build: nesting (a recursive
# ``$ref`` ends in an empty object or array) and array length.
_MAX_DEPTH = 16
_MAX_ITEMS = 64
# Streamed JSON is cut into pieces of at most this many characters, and
# into at least three pieces.
_PIECE_CHARS = 8
_PARALLEL = re.compile(r"\bparallel\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ScriptedAnswer:
    """One choice's answer: text (``content``) or function calls."""

    content: str | None = None
    # (function name, arguments as compact JSON text), in call order.
    calls: tuple[tuple[str, str], ...] = ()
    # Legacy ``functions`` request: answered with ``function_call``.
    legacy: bool = False
    # ``content`` is JSON: streamed in character pieces, not words.
    structured: bool = False

    @property
    def finish_reason(self) -> str:
        if not self.calls:
            return "stop"
        return "function_call" if self.legacy else "tool_calls"

    def generated_text(self) -> str:
        """What the model wrote, for the completion token count."""
        if self.content is not None:
            return self.content
        return "".join(arguments for _, arguments in self.calls)

    def message(self) -> JSONDict:
        """The ``chat.completion`` message (tool-call ids fresh each time)."""
        out: JSONDict = {"role": "assistant", "content": self.content, "refusal": None}
        if self.legacy and self.calls:
            name, arguments = self.calls[0]
            out["function_call"] = {"name": name, "arguments": arguments}
        elif self.calls:
            out["tool_calls"] = [tool_call(new_tool_call_id(), n, a) for n, a in self.calls]
        return out

    def deltas(self) -> list[JSONDict]:
        """The streamed deltas after the opening ``role`` one, in order: each
        call opened once, then its arguments in pieces (parallel calls'
        pieces interleaved); or the text's pieces."""
        if self.legacy and self.calls:
            name, arguments = self.calls[0]
            opened: JSONDict = {"function_call": {"name": name, "arguments": ""}}
            return [opened] + [{"function_call": {"arguments": p}} for p in _pieces(arguments)]
        if self.calls:
            streams = [
                [tool_call_opened(i, new_tool_call_id(), name)]
                + [tool_call_arguments_piece(i, piece) for piece in _pieces(arguments)]
                for i, (name, arguments) in enumerate(self.calls)
            ]
            return [d for step in zip_longest(*streams) for d in step if d is not None]
        text = self.content or ""
        pieces = _pieces(text) if self.structured else _words(text)
        return [{"content": piece} for piece in pieces]


def scripted_answer(body: JSONDict) -> ScriptedAnswer | None:
    """The answer the request's shape decides, or None for plain text.

    Cheap when the request has no tools, tool results or response format:
    the simulator's plain-text path runs in benchmarks."""
    messages = body.get("messages") or ()
    for message in reversed(messages):  # the last turn: back to the last assistant message
        role = message.get("role")
        if role == "assistant":
            break
        if role == "tool" or role == "function":
            return ScriptedAnswer("Tool said: " + "; ".join(_tool_results(messages)))
    if "tools" in body or "functions" in body:
        calls = _tool_calls(body, messages)
        if calls is not None:
            return calls
    if "response_format" in body:
        fmt = response_format(body)
        if fmt is not None:
            value = sample_json(fmt.schema) if fmt.schema is not None else {"answer": "Paris"}
            return ScriptedAnswer(orjson.dumps(value).decode(), structured=True)
    return None


def _tool_results(messages: Sequence[JSONDict]) -> list[str]:
    """The texts of the tool results in the last turn (the messages after
    the last assistant message), in order."""
    found: list[str] = []
    for i in range(len(messages) - 1, -1, -1):
        role = messages[i].get("role")
        if role == "assistant":
            break
        if role in ("tool", "function"):
            found.append(tool_result_text(messages[i].get("content"), f"messages[{i}]"))
    return found[::-1]


def _tool_calls(body: JSONDict, messages: Sequence[JSONDict]) -> ScriptedAnswer | None:
    tools = function_tools(body)
    choice = tool_choice(body)
    if not tools or choice.kind == "none":
        return None
    legacy = body.get("tools") is None
    parallel = (
        not legacy
        and body.get("parallel_tool_calls") is not False
        and _PARALLEL.search(_last_user_text(messages)) is not None
    )
    if parallel:
        chosen = tools[:2]
    elif choice.kind == "function":
        chosen = [t for t in tools if t.name == choice.name]
    else:
        chosen = tools[:1]
    calls = tuple((t.name, _arguments(t.parameters)) for t in chosen)
    return ScriptedAnswer(calls=calls, legacy=legacy)


def _last_user_text(messages: Sequence[JSONDict]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def _arguments(parameters: JSONDict) -> str:
    value = sample_json(parameters)
    return orjson.dumps(value if isinstance(value, dict) else {}).decode()


# -- JSON from a schema --------------------------------------------------------


def sample_json(schema: Any) -> Any:
    """A value for a JSON Schema: each property filled (string "Paris",
    integer 3, number 1.5, boolean true, null), nested objects filled,
    arrays empty unless ``minItems`` asks for items, ``enum`` its first
    value, ``const`` itself, ``anyOf``/``oneOf`` their first non-null
    branch, local ``$ref`` (``#/$defs/...``) resolved."""
    root = schema if isinstance(schema, dict) else {}
    return _sample(schema, root, 0)


def _sample(schema: Any, root: JSONDict, depth: int) -> Any:
    if not isinstance(schema, dict):
        return _LEAVES["string"]  # `true` or a malformed schema: anything goes
    schema = _resolved(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list) and enum:
        return enum[0]
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and branches:
            usable = [b for b in branches if not (isinstance(b, dict) and b.get("type") == "null")]
            return _sample((usable or branches)[0], root, depth + 1)
    parts = schema.get("allOf")
    if isinstance(parts, list) and parts:
        merged = {k: v for k, v in schema.items() if k != "allOf"}
        for part in parts:
            if isinstance(part, dict):
                merged.update(_resolved(part, root))
        return _sample(merged, root, depth + 1)
    kind = _type_of(schema)
    if kind == "object":
        properties = schema.get("properties")
        if not isinstance(properties, dict) or depth >= _MAX_DEPTH:
            return {}
        return {name: _sample(sub, root, depth + 1) for name, sub in properties.items()}
    if kind == "array":
        wanted = schema.get("minItems")
        if not isinstance(wanted, int) or wanted < 1 or depth >= _MAX_DEPTH:
            return []
        return [
            _sample(schema.get("items"), root, depth + 1) for _ in range(min(wanted, _MAX_ITEMS))
        ]
    if kind in ("integer", "number"):
        return _clamped(_LEAVES[kind], schema, integer=kind == "integer")
    return _LEAVES.get(kind, _LEAVES["string"])


def _resolved(schema: JSONDict, root: JSONDict) -> JSONDict:
    """``schema`` with its local ``$ref`` followed (siblings of the ``$ref``
    kept, as JSON Schema 2020-12 reads them); an unknown one is ``{}``."""
    for _ in range(_MAX_DEPTH):
        ref = schema.get("$ref")
        if not isinstance(ref, str):
            return schema
        target: Any = root
        if ref.startswith("#"):
            for part in ref[1:].split("/")[1:]:
                key = part.replace("~1", "/").replace("~0", "~")
                target = target.get(key) if isinstance(target, dict) else None
        else:
            target = None  # a remote document: not fetched
        siblings = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**target, **siblings} if isinstance(target, dict) else siblings
    return schema


def _type_of(schema: JSONDict) -> str:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if isinstance(kind, str):
        return kind
    if "properties" in schema:
        return "object"
    if "items" in schema:
        return "array"
    return "string"


def _clamped(value: float, schema: JSONDict, *, integer: bool) -> float:
    low, high = schema.get("minimum"), schema.get("maximum")
    if isinstance(low, int | float) and value < low:
        value = math.ceil(low) if integer else low
    if isinstance(high, int | float) and value > high:
        value = math.floor(high) if integer else high
    return value


# -- streaming pieces ----------------------------------------------------------


def _pieces(text: str) -> list[str]:
    """``text`` in at least three pieces (when it has three characters) of
    at most ``_PIECE_CHARS``."""
    size = max(1, min(_PIECE_CHARS, len(text) // 3))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _words(text: str) -> list[str]:
    """``text`` a word at a time, each after the first with its leading space."""
    words = text.split(" ")
    return [words[0], *(" " + w for w in words[1:])] if text else []
