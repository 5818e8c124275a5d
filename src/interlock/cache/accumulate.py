"""Turns a finished ``chat.completion.chunk`` stream back into a ``CacheEntry``.

Fed every chunk as it passes (the usage-only chunk included), it keeps text,
refusal and tool-call fragments per choice index, the finish reasons, model,
fingerprint and usage. A stream that did not finish every choice, carried no
usage, or carried log-probabilities yields no entry: a partial or
unreplayable answer must never be served again. Past ``max_bytes`` of chunks
it gives up and lets go of what it held: an answer too big to store is not
worth holding twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.cache.entry import CachedChoice, CacheEntry

__all__ = ["StreamAccumulator", "merge_tool_call"]


@dataclass(slots=True)
class _Partial:
    content: list[str] = field(default_factory=list)
    saw_content: bool = False
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None


class StreamAccumulator:
    def __init__(self, max_bytes: int | None = None) -> None:
        self._max_bytes = max_bytes
        self._choices: dict[int, _Partial] = {}
        self._model = ""
        self._fingerprint: str | None = None
        self._usage: dict[str, Any] | None = None
        self._broken = False
        self.bytes_seen = 0

    def feed(self, chunk: bytes) -> None:
        if self._broken:
            return
        self.bytes_seen += len(chunk)
        if self._max_bytes is not None and self.bytes_seen > self._max_bytes:
            self._broken = True
            self._choices.clear()
            return
        try:
            parsed = orjson.loads(chunk)
            self._model = parsed.get("model") or self._model
            self._fingerprint = parsed.get("system_fingerprint") or self._fingerprint
            if isinstance(parsed.get("usage"), dict):
                self._usage = parsed["usage"]
            for choice in parsed.get("choices") or ():
                self._feed_choice(choice)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError, KeyError):
            self._broken = True

    def _feed_choice(self, choice: dict[str, Any]) -> None:
        if choice.get("logprobs") is not None:
            self._broken = True
            return
        partial = self._choices.setdefault(int(choice.get("index", 0)), _Partial())
        delta = choice.get("delta") or {}
        if delta.get("audio") or delta.get("function_call"):
            self._broken = True
        if isinstance(delta.get("content"), str):
            partial.saw_content = True
            partial.content.append(delta["content"])
        if isinstance(delta.get("refusal"), str):
            partial.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            merge_tool_call(partial.tool_calls, call)
        if choice.get("finish_reason"):
            partial.finish_reason = str(choice["finish_reason"])

    def entry(self, *, cost_usd: float = 0.0) -> CacheEntry | None:
        """The finished answer, or None when it is incomplete or not replayable."""
        if self._broken or not self._choices or self._usage is None:
            return None
        choices = []
        for index in sorted(self._choices):
            partial = self._choices[index]
            if partial.finish_reason is None:
                return None
            choices.append(
                CachedChoice(
                    index=index,
                    content="".join(partial.content) if partial.saw_content else None,
                    finish_reason=partial.finish_reason,
                    refusal="".join(partial.refusal) or None,
                    tool_calls=tuple(partial.tool_calls[i] for i in sorted(partial.tool_calls)),
                )
            )
        return CacheEntry(
            model=self._model,
            choices=tuple(choices),
            usage=self._usage,
            system_fingerprint=self._fingerprint,
            cost_usd=cost_usd,
        )


def merge_tool_call(calls: dict[int, dict[str, Any]], delta: dict[str, Any]) -> None:
    """OpenAI sends id, type and name once, then the arguments in fragments
    (a custom tool's call: its input)."""
    position = int(delta.get("index", 0))
    if delta.get("type") == "custom":
        calls[position] = {"id": "", "type": "custom", "custom": {"name": "", "input": ""}}
    call = calls.setdefault(
        position, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}}
    )
    if delta.get("id"):
        call["id"] = delta["id"]
    if call["type"] == "custom":
        custom = delta.get("custom") or {}
        call["custom"]["name"] += custom.get("name") or ""
        call["custom"]["input"] += custom.get("input") or ""
        return
    if delta.get("type"):
        call["type"] = delta["type"]
    function = delta.get("function") or {}
    call["function"]["name"] += function.get("name") or ""
    call["function"]["arguments"] += function.get("arguments") or ""
