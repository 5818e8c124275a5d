"""A conversation as one upstream on OpenAI's wire takes it: the role of
developer instructions and the reasoning of earlier assistant turns.

- ``developer`` is OpenAI's successor of ``system``; a server that knows only
  the older role (DeepSeek refuses the request; many chat templates skip the
  message or fail) is sent ``system`` instead (``developer_role``).
- An assistant turn's reasoning travels as chat's ``reasoning_content`` on
  its message: a chat client writes it itself, and the Messages and
  Responses edges fill it from thinking blocks and reasoning items. DeepSeek's
  thinking mode needs it back in a tool loop (a 400 otherwise), on every
  assistant message once a tool was called ("" will do where none was kept);
  OpenAI's API knows no such field. So each deployment says what goes
  (``reasoning_history``): ``send``, ``always`` (and "" where a message has
  none), ``drop``; unset, a chat client's own goes as it sent it and an
  edge's does not, as before the edges wrote it.

No I/O. The usual request (no developer message, no policy to apply) is
returned as it came, nothing copied.
"""

from __future__ import annotations

from typing import Any, Literal

__all__ = ["ReasoningPolicy", "fitted_messages"]

ReasoningPolicy = Literal["send", "always", "drop"] | None

_REASONING = "reasoning_content"


def fitted_messages(
    messages: list[Any],
    *,
    developer_as_system: bool,
    reasoning: ReasoningPolicy,
    from_edge: bool,
) -> list[Any] | None:
    """``messages`` as this upstream takes them, or None where they need no
    change. ``from_edge``: another dialect's edge wrote them (its reasoning
    goes only where the policy sends it)."""
    keep = _kept(reasoning, from_edge)
    fill = reasoning == "always"
    if keep and not fill and not developer_as_system:
        return None  # a chat client's conversation, as it sent it: the usual request
    fitted: list[Any] | None = None
    for index, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        role = message.get("role")
        if role == "developer" and developer_as_system:
            changed: dict[str, Any] = {**message, "role": "system"}
        elif role != "assistant":
            continue
        elif not keep and _REASONING in message:
            changed = {k: v for k, v in message.items() if k != _REASONING}
        elif fill and not isinstance(message.get(_REASONING), str):
            changed = {**message, _REASONING: ""}
        else:
            continue
        if fitted is None:
            fitted = list(messages)
        fitted[index] = changed
    return fitted


def _kept(reasoning: ReasoningPolicy, from_edge: bool) -> bool:
    """Whether a message's own ``reasoning_content`` goes on."""
    if reasoning is None:
        return not from_edge
    return reasoning != "drop"
