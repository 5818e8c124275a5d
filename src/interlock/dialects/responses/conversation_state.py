"""What a conversation's items set for the turns after them: the tools they
add (``added_tools.py``) and ``configuration_update`` items.

A client that keeps the request's own ``reasoning`` and ``text`` as they
were at the conversation's start (so the upstream's prompt cache keeps its
prefix) changes them with a ``configuration_update`` item in the input
instead: a reasoning effort, a text format, each in effect until a later
update replaces it (Codex's effort override; Oh My Pi's effort changes).
The request is read with the latest of each in place of its own, before
anything reads it: the translation, the Response's echo of its settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from interlock.dialects.responses.added_tools import with_added_tools
from interlock.dialects.responses.schemas import (
    ConfigurationUpdate,
    InputItem,
    Reasoning,
    ResponsesRequest,
    TextConfig,
)

__all__ = ["in_effect", "with_updates"]


def in_effect(request: ResponsesRequest, history: Sequence[InputItem]) -> ResponsesRequest:
    """``request`` as its conversation (the stored ``history``, then its
    input) leaves it: its tools and settings as of its last item."""
    if isinstance(request.input, str) and not history:
        return request  # the usual request: nothing to look through
    return with_updates(with_added_tools(request, history), history)


def with_updates(request: ResponsesRequest, history: Sequence[InputItem]) -> ResponsesRequest:
    """``request`` with its conversation's latest ``configuration_update``
    of each setting in place of its own."""
    own = [] if isinstance(request.input, str) else request.input
    changed: dict[str, Any] = {}
    for item in (*history, *own):
        if not isinstance(item, ConfigurationUpdate):
            continue
        if item.reasoning is not None and "effort" in item.reasoning.model_fields_set:
            reasoning = changed.get("reasoning") or request.reasoning or Reasoning()
            changed["reasoning"] = reasoning.model_copy(update={"effort": item.reasoning.effort})
        if item.text is not None:
            text = changed.get("text") or request.text or TextConfig()
            changed["text"] = text.model_copy(update={"format": item.text.format})
    return request.model_copy(update=changed) if changed else request
