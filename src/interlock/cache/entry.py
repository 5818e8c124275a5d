"""The stored answer: one compact form, replayed as JSON or as a stream.

A ``CacheEntry`` keeps what an answer is made of (per choice: text, refusal,
tool calls, finish reason) plus the model, fingerprint and the ORIGINAL usage,
so a hit reports the tokens the answer cost. From it ``completion`` renders a
``chat.completion`` and ``chunks`` a ``chat.completion.chunk`` sequence, each
with a fresh id, so a stream can fill the cache for a non-streaming request
and the other way round.

Answers we cannot replay faithfully (log-probabilities, audio, annotations,
legacy ``function_call``) never become entries: ``from_completion`` and the
stream accumulator return ``None`` and the answer is simply not stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from interlock.providers.shapes import chunk_bytes, chunk_choice

__all__ = ["CacheEntry", "CachedChoice", "split_text"]

JSONDict = dict[str, Any]
_FORMAT = 1
# Message fields an entry reproduces; any other non-empty one makes the answer uncacheable.
_REPLAYABLE = frozenset({"role", "content", "refusal", "tool_calls"})


@dataclass(frozen=True, slots=True)
class CachedChoice:
    index: int
    content: str | None
    finish_reason: str
    refusal: str | None = None
    # OpenAI's final shape: [{"id", "type", "function": {"name", "arguments"}}].
    tool_calls: tuple[JSONDict, ...] = ()


@dataclass(frozen=True, slots=True)
class CacheEntry:
    model: str
    choices: tuple[CachedChoice, ...]
    usage: JSONDict
    system_fingerprint: str | None = None
    # What the original answer cost; a hit adds it to the money saved.
    cost_usd: float = 0.0

    # -- building ------------------------------------------------------------

    @classmethod
    def from_completion(cls, result: JSONDict, *, cost_usd: float = 0.0) -> CacheEntry | None:
        """The entry for a ``chat.completion`` object, or None if it cannot be replayed."""
        usage, choices = result.get("usage"), result.get("choices")
        if not isinstance(usage, dict) or not isinstance(choices, list) or not choices:
            return None
        kept: list[CachedChoice] = []
        for choice in choices:
            message = choice.get("message")
            if not isinstance(message, dict) or choice.get("logprobs") is not None:
                return None
            if any(v not in (None, []) for k, v in message.items() if k not in _REPLAYABLE):
                return None
            finish = choice.get("finish_reason")
            if not isinstance(finish, str):
                return None
            kept.append(
                CachedChoice(
                    index=int(choice.get("index", len(kept))),
                    content=message.get("content"),
                    finish_reason=finish,
                    refusal=message.get("refusal"),
                    tool_calls=tuple(message.get("tool_calls") or ()),
                )
            )
        return cls(
            model=str(result.get("model") or ""),
            choices=tuple(kept),
            usage=usage,
            system_fingerprint=result.get("system_fingerprint"),
            cost_usd=cost_usd,
        )

    # -- rendering -----------------------------------------------------------

    def completion(self, completion_id: str, created: int) -> JSONDict:
        """A non-streaming ``chat.completion`` with the original usage."""
        choices = []
        for choice in self.choices:
            message: JSONDict = {
                "role": "assistant",
                "content": choice.content,
                "refusal": choice.refusal,
            }
            if choice.tool_calls:
                message["tool_calls"] = [dict(call) for call in choice.tool_calls]
            choices.append(
                {
                    "index": choice.index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": choice.finish_reason,
                }
            )
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": self.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
            "usage": orjson.loads(orjson.dumps(self.usage)),  # callers may mutate theirs
        }

    def chunks(
        self, completion_id: str, created: int, *, include_usage: bool, piece_chars: int = 48
    ) -> list[bytes]:
        """The answer as OpenAI streams it: role, content pieces, tool calls,
        finish reasons, and the usage-only chunk when the client asked for it."""

        def chunk(choices: list[JSONDict], usage: JSONDict | None = None) -> bytes:
            return chunk_bytes(
                completion_id,
                created,
                self.model,
                choices,
                include_usage=include_usage,
                usage=usage,
                fingerprint=self.system_fingerprint,
            )

        out = [
            chunk([chunk_choice(c.index, {"role": "assistant", "content": _opening(c)})])
            for c in self.choices
        ]
        for c in self.choices:
            for piece in split_text(c.content or "", piece_chars):
                out.append(chunk([chunk_choice(c.index, {"content": piece})]))
            if c.refusal:
                out.append(chunk([chunk_choice(c.index, {"refusal": c.refusal})]))
            for position, call in enumerate(c.tool_calls):
                delta = {"tool_calls": [{"index": position, **call}]}
                out.append(chunk([chunk_choice(c.index, delta)]))
            out.append(chunk([chunk_choice(c.index, {}, c.finish_reason)]))
        if include_usage:
            out.append(chunk([], self.usage))
        return out

    # -- storage -------------------------------------------------------------

    def to_bytes(self) -> bytes:
        choices = [
            [c.index, c.content, c.finish_reason, c.refusal, list(c.tool_calls)]
            for c in self.choices
        ]
        record = {
            "v": _FORMAT,
            "m": self.model,
            "f": self.system_fingerprint,
            "c": choices,
            "u": self.usage,
            "$": self.cost_usd,
        }
        return orjson.dumps(record)

    @classmethod
    def from_bytes(cls, data: bytes) -> CacheEntry | None:
        """The entry, or None for bytes we cannot read (another version, corruption)."""
        try:
            record = orjson.loads(data)
            if record.get("v") != _FORMAT:
                return None
            choices = tuple(
                CachedChoice(int(i), content, str(finish), refusal, tuple(calls))
                for i, content, finish, refusal, calls in record["c"]
            )
            return cls(
                model=str(record["m"]),
                choices=choices,
                usage=dict(record["u"]),
                system_fingerprint=record["f"],
                cost_usd=float(record["$"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            return None


def _opening(choice: CachedChoice) -> str | None:
    """OpenAI opens with ``content: ""``, or null when the answer is only tool calls."""
    return "" if choice.content is not None else None


def split_text(text: str, size: int) -> list[str]:
    """Pieces of at most ``size`` characters, cut after whitespace where one is near.

    ``"".join(split_text(t, n)) == t`` always: replay must not change the text.
    """
    pieces: list[str] = []
    start = 0
    while len(text) - start > size:
        window_end = start + size
        cut = max(text.rfind(" ", start + 1, window_end), text.rfind("\n", start + 1, window_end))
        end = cut + 1 if cut > start else window_end
        pieces.append(text[start:end])
        start = end
    if start < len(text):
        pieces.append(text[start:])
    return pieces
