"""Where the text is in a request body, and how to put rewritten text back.

Covers chat ``messages`` (string content, or text parts of list content,
and an assistant turn's reasoning sent back, by either of its names),
the string values inside an assistant message's tool-call ``arguments``
(JSON text: each string in it is a field of its own, its path going on past
``arguments`` into the parsed JSON, so a replacement never cuts an escape
in half), a custom tool call's ``input`` (plain text), and the string or
list-of-strings ``input`` (embeddings) and ``prompt`` (completions), and a
legacy completion's ``suffix`` (the text after the one to write).
Rewriting copies only the containers on the changed paths; arguments with
a changed value are serialised again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.chat_markers import REASONING_FIELDS

__all__ = [
    "TextField",
    "called_function",
    "custom_input",
    "param_name",
    "rewrite_json_strings",
    "text_fields",
    "with_texts",
]

Path = tuple[str | int, ...]
_TEXT_PARTS = ("text", "input_text")


@dataclass(frozen=True, slots=True)
class TextField:
    path: Path
    role: str | None  # the message's role; None outside ``messages``
    text: str

    @property
    def param(self) -> str:
        return param_name(self.path)


def param_name(path: Path) -> str:
    """``("messages", 3, "content")`` -> ``messages[3].content``."""
    out = ""
    for step in path:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def text_fields(body: Mapping[str, Any]) -> list[TextField]:
    fields: list[TextField] = []
    messages = body.get("messages")
    if isinstance(messages, list):
        for i, message in enumerate(messages):
            if not isinstance(message, Mapping):
                continue
            role = message.get("role") if isinstance(message.get("role"), str) else None
            content = message.get("content")
            if isinstance(content, str):
                fields.append(TextField(("messages", i, "content"), role, content))
            elif isinstance(content, list):
                for j, part in enumerate(content):
                    if (
                        isinstance(part, Mapping)
                        and part.get("type") in _TEXT_PARTS
                        and isinstance(part.get("text"), str)
                    ):
                        fields.append(
                            TextField(("messages", i, "content", j, "text"), role, part["text"])
                        )
            for name in REASONING_FIELDS:  # an earlier turn's reasoning, sent back
                reasoning = message.get(name)
                if isinstance(reasoning, str) and reasoning:
                    fields.append(TextField(("messages", i, name), role, reasoning))
            calls = message.get("tool_calls")
            if isinstance(calls, list):
                fields += _argument_fields(calls, ("messages", i, "tool_calls"), role)
    for key in ("input", "prompt", "suffix"):
        value = body.get(key)
        if isinstance(value, str):
            fields.append(TextField((key,), None, value))
        elif isinstance(value, list):
            fields.extend(
                TextField((key, i), None, item)
                for i, item in enumerate(value)
                if isinstance(item, str)
            )
    return fields


def called_function(call: Any) -> dict[str, Any] | None:
    """A tool call's ``function`` object, where its ``arguments`` are text
    (in a request, an answer, or a streamed piece of one)."""
    function = call.get("function") if isinstance(call, Mapping) else None
    if isinstance(function, dict) and isinstance(function.get("arguments"), str):
        return function
    return None


def custom_input(call: Any) -> str | None:
    """A custom (freeform) tool call's ``input`` text, where ``call`` is one
    (in a request, an answer, or a streamed piece of one)."""
    custom = call.get("custom") if isinstance(call, Mapping) else None
    if isinstance(custom, dict) and isinstance(custom.get("input"), str):
        text: str = custom["input"]
        return text
    return None


def _argument_fields(calls: list[Any], base: Path, role: str | None) -> list[TextField]:
    fields: list[TextField] = []
    for k, call in enumerate(calls):
        custom = custom_input(call)
        if custom is not None:  # a freeform tool's input: plain text
            fields.append(TextField((*base, k, "custom", "input"), role, custom))
            continue
        function = called_function(call)
        if function is None:
            continue
        arguments: str = function["arguments"]
        path = (*base, k, "function", "arguments")
        parsed = _json_container(arguments)
        if parsed is None:
            # Not a JSON object or array (a model's broken call): scanned as
            # the text it is.
            fields.append(TextField(path, role, arguments))
            continue
        fields += [TextField((*path, *inner), role, text) for inner, text in _strings(parsed)]
    return fields


def _json_container(text: str) -> dict[str, Any] | list[Any] | None:
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return parsed if isinstance(parsed, dict | list) else None


def _strings(value: Any, path: Path = ()) -> list[tuple[Path, str]]:
    """Every string value in parsed JSON, with its path (keys are not values)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [found for key, item in value.items() for found in _strings(item, (*path, key))]
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in _strings(item, (*path, i))]
    return []


def rewrite_json_strings(text: str, rewrite: Callable[[str], str]) -> str | None:
    """``text`` (a JSON object or array) with ``rewrite`` applied to each
    string value in it, serialised again only if one changed; None if
    ``text`` is not a JSON object or array."""
    parsed = _json_container(text)
    if parsed is None:
        return None
    changed = {}
    for path, value in _strings(parsed):
        new = rewrite(value)
        if new != value:
            changed[path] = new
    if not changed:
        return text
    _set_all(parsed, changed.items())
    return orjson.dumps(parsed).decode()


def _set_all(parsed: Any, changes: Iterable[tuple[Path, str]]) -> None:
    """Each change's string put at its path in ``parsed`` (freshly parsed JSON)."""
    for path, text in changes:
        holder = parsed
        for step in path[:-1]:
            holder = holder[step]
        holder[path[-1]] = text


def with_texts(body: Mapping[str, Any], texts: Mapping[Path, str]) -> dict[str, Any]:
    """A copy of ``body`` with the text at each path replaced; containers off the
    changed paths are shared with the original, which is never mutated. A
    path that goes on past a string walks into that string's JSON."""
    texts = _inside_json(body, texts)
    out = dict(body)
    copies = {id(out)}  # containers created here, safe to write into
    for path, text in texts.items():
        node: Any = out
        for step in path[:-1]:
            child = node[step]
            if id(child) not in copies:
                child = list(child) if isinstance(child, list) else dict(child)
                copies.add(id(child))
                node[step] = child
            node = child
        node[path[-1]] = text
    return out


def _inside_json(body: Mapping[str, Any], texts: Mapping[Path, str]) -> Mapping[Path, str]:
    """``texts`` with the replacements inside JSON strings made: one
    replacement of each such string, parsed, changed and serialised again."""
    plain: dict[Path, str] = {}
    nested: dict[Path, list[tuple[Path, str]]] = {}
    for path, text in texts.items():
        node: Any = body
        for depth, step in enumerate(path):
            if isinstance(node, str):
                nested.setdefault(path[:depth], []).append((path[depth:], text))
                break
            node = node[step]
        else:
            plain[path] = text
    for outer, changes in nested.items():
        node = body
        for step in outer:
            node = node[step]
        parsed = orjson.loads(node)
        _set_all(parsed, changes)
        plain[outer] = orjson.dumps(parsed).decode()
    return plain
