"""Anthropic's Messages API, translated to and from OpenAI's chat shape.

``schemas`` validates requests; ``request`` translates them into chat
bodies; ``answer`` translates a ``chat.completion`` into a message,
``stream`` chunks into Anthropic's events; ``errors`` gives errors
Anthropic's shape. The edge that reads and writes HTTP is
``interlock.api.messages``.
"""

from interlock.dialects.anthropic.answer import message
from interlock.dialects.anthropic.errors import error_body, error_type
from interlock.dialects.anthropic.request import chat_body, reasoning_effort
from interlock.dialects.anthropic.schemas import (
    CountTokensRequest,
    MessagesRequest,
    validate_request,
)
from interlock.dialects.anthropic.stream import EventTranslator, event

__all__ = [
    "CountTokensRequest",
    "EventTranslator",
    "MessagesRequest",
    "chat_body",
    "error_body",
    "error_type",
    "event",
    "message",
    "reasoning_effort",
    "validate_request",
]
