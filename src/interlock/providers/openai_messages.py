"""A conversation as one upstream on OpenAI's wire takes it: the role of
developer instructions and the reasoning of earlier assistant turns.

- ``developer`` is OpenAI's successor of ``system``; a server that knows only
  the older role (DeepSeek refuses the request; many chat templates skip the
  message or fail) is sent ``system`` instead (``developer_role``).
- An assistant turn's reasoning travels as text on its message: a chat
  client writes it itself (as ``reasoning_content``, or ``reasoning`` as
  vLLM answers it), and the Messages and Responses edges write
  ``reasoning_content`` from thinking blocks and reasoning items. DeepSeek's
  and Moonshot's (Kimi) thinking modes need it back in a tool loop (a 400
  otherwise): on each assistant message with tool calls, and DeepSeek on
  every one once a tool was called. Where none was kept a placeholder will
  do, though not an empty one for Kimi: a single space. vLLM's templates
  use it for interleaved thinking; OpenAI's API knows no such field. So
  each deployment says what goes (``reasoning_history``): ``send``,
  ``always`` (and the placeholder where a message has none), ``drop``;
  under the name it reads (``reasoning_field``). Unset, a
  chat client's own goes as it sent it and an edge's does not, as before
  the edges wrote it.

No I/O. The usual request (no developer message, no policy to apply) is
returned as it came, nothing copied.
"""

from __future__ import annotations

from typing import Any, Literal

from interlock.chat_markers import REASONING_FIELDS, reasoning_text

__all__ = ["PLACEHOLDER", "ReasoningPolicy", "fitted_messages"]

ReasoningPolicy = Literal["send", "always", "drop"] | None

# What ``always`` sends where a turn's reasoning was not kept: DeepSeek takes
# "" too, Kimi (K2.5, K2.6) refuses that as missing and takes a space.
PLACEHOLDER = " "


def fitted_messages(
    messages: list[Any],
    *,
    developer_as_system: bool,
    reasoning: ReasoningPolicy,
    field: str = "reasoning_content",
    from_edge: bool,
) -> list[Any] | None:
    """``messages`` as this upstream takes them, or None where they need no
    change. ``field``: the name the upstream reads a turn's reasoning by
    (with ``send`` and ``always``); ``from_edge``: another dialect's edge
    wrote them (its reasoning goes only where the policy sends it)."""
    if reasoning is None and not from_edge and not developer_as_system:
        return None  # a chat client's conversation, as it sent it: the usual request
    fitted: list[Any] | None = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "developer" and developer_as_system:
            changed: dict[str, Any] | None = {**message, "role": "system"}
        elif role == "assistant":
            changed = _reasoned(message, reasoning, field, from_edge)
        else:
            continue
        if changed is None:
            continue
        if fitted is None:
            fitted = list(messages)
        fitted[index] = changed
    return fitted


def _reasoned(
    message: dict[str, Any], reasoning: ReasoningPolicy, field: str, from_edge: bool
) -> dict[str, Any] | None:
    """An assistant message with its reasoning as the upstream takes it; None
    where it goes as it is."""
    if reasoning is None and not from_edge:
        return None  # a chat client's own, as it sent it
    text: str | None = None  # unset (an edge's) or drop: none goes
    if reasoning in ("send", "always"):
        text = reasoning_text(message)
        if text is None and reasoning == "always":
            text = PLACEHOLDER
    present = [name for name in REASONING_FIELDS if name in message]
    if text is None and not present:
        return None  # nothing to send, nothing to take out
    if text is not None and present == [field] and message[field] == text:
        return None  # already as the upstream takes it
    changed = {k: v for k, v in message.items() if k not in REASONING_FIELDS}
    if text is not None:
        changed[field] = text
    return changed
