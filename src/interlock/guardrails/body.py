"""Where the text is in a request body, and how to put rewritten text back.

Covers chat ``messages`` (string content, or text parts of list content),
and the string or list-of-strings ``input`` (embeddings) and ``prompt``
(completions). Rewriting copies only the containers on the changed paths.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["TextField", "param_name", "text_fields", "with_texts"]

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
    for key in ("input", "prompt"):
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


def with_texts(body: Mapping[str, Any], texts: Mapping[Path, str]) -> dict[str, Any]:
    """A copy of ``body`` with the text at each path replaced; containers off the
    changed paths are shared with the original, which is never mutated."""
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
