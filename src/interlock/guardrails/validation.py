"""Input limits: message count, sizes, max_tokens bounds, roles, content types.

``check_limits`` returns the first violation as a ``Block`` whose ``param``
points at the offending field (``messages[3].content``), or ``None``. Sizes
are characters of text (text parts of list content count; images do not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from interlock.guardrails.decision import Block

__all__ = ["InputLimits", "check_limits"]


@dataclass(frozen=True, slots=True)
class InputLimits:
    """``None`` means no limit."""

    max_messages: int | None = None
    max_message_chars: int | None = None
    max_total_chars: int | None = None
    # Upper bound for ``max_tokens`` / ``max_completion_tokens``.
    max_tokens: int | None = None
    allowed_roles: frozenset[str] | None = None
    allowed_content_types: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for name in ("max_messages", "max_message_chars", "max_total_chars", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be a positive integer")


def _block(code: str, param: str, message: str) -> Block:
    return Block("limits", code, param, message)


def check_limits(body: Mapping[str, Any], limits: InputLimits) -> Block | None:
    return (
        _check_max_tokens(body, limits)
        or _check_messages(body, limits)
        or _check_inputs(body, limits)
    )


def _check_max_tokens(body: Mapping[str, Any], limits: InputLimits) -> Block | None:
    for name in ("max_tokens", "max_completion_tokens"):
        if name not in body or body[name] is None:
            continue
        value = body[name]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return _block("invalid_max_tokens", name, f"`{name}` must be a positive integer.")
        if limits.max_tokens is not None and value > limits.max_tokens:
            return _block(
                "max_tokens_too_large",
                name,
                f"`{name}` is {value}; at most {limits.max_tokens} is allowed.",
            )
    return None


def _check_messages(body: Mapping[str, Any], limits: InputLimits) -> Block | None:
    messages = body.get("messages")
    if messages is None:
        return None
    if not isinstance(messages, list):
        return _block("invalid_messages", "messages", "`messages` must be an array.")
    if limits.max_messages is not None and len(messages) > limits.max_messages:
        return _block(
            "too_many_messages",
            "messages",
            f"{len(messages)} messages; at most {limits.max_messages} are allowed.",
        )
    total = 0
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping):
            return _block("invalid_messages", f"messages[{i}]", "Each message must be an object.")
        role = message.get("role")
        if limits.allowed_roles is not None and role not in limits.allowed_roles:
            return _block(
                "invalid_role",
                f"messages[{i}].role",
                f"Role is not allowed here; allowed: {', '.join(sorted(limits.allowed_roles))}.",
            )
        size, problem = _content_size(message.get("content"), f"messages[{i}].content", limits)
        if problem is not None:
            return problem
        if limits.max_message_chars is not None and size > limits.max_message_chars:
            return _block(
                "message_too_long",
                f"messages[{i}].content",
                f"Message is {size} characters; at most {limits.max_message_chars} are allowed.",
            )
        total += size
    if limits.max_total_chars is not None and total > limits.max_total_chars:
        return _block(
            "input_too_long",
            "messages",
            f"Messages total {total} characters; at most {limits.max_total_chars} are allowed.",
        )
    return None


def _content_size(content: Any, param: str, limits: InputLimits) -> tuple[int, Block | None]:
    if content is None or isinstance(content, str):
        return len(content or ""), None
    if not isinstance(content, list):
        return 0, _block("invalid_content", param, "Content must be a string or an array of parts.")
    size = 0
    allowed = limits.allowed_content_types
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, Mapping) else None
        if allowed is not None and kind not in allowed:
            return 0, _block(
                "unsupported_content_type",
                f"{param}[{j}].type",
                f"Content part type is not allowed here; allowed: {', '.join(sorted(allowed))}.",
            )
        if isinstance(part, Mapping) and isinstance(part.get("text"), str):
            size += len(part["text"])
    return size, None


def _check_inputs(body: Mapping[str, Any], limits: InputLimits) -> Block | None:
    """``input`` (embeddings) and ``prompt`` (completions): total size only."""
    if limits.max_total_chars is None:
        return None
    for key in ("input", "prompt"):
        value = body.get(key)
        items = [value] if isinstance(value, str) else value if isinstance(value, list) else []
        total = sum(len(item) for item in items if isinstance(item, str))
        if total > limits.max_total_chars:
            return _block(
                "input_too_long",
                key,
                f"`{key}` totals {total} characters; at most {limits.max_total_chars} are allowed.",
            )
    return None
