"""Responses API stream events -> ``chat.completion.chunk`` bytes (no I/O).

``feed`` each parsed event; ``finished`` turns true at the response's last
event (``response.completed`` or ``response.incomplete``). A text delta is
a content chunk, a reasoning summary's (or, from servers that stream it,
the reasoning text's) a ``reasoning_content`` chunk, a function call's or
custom tool call's item opens chat's tool call (its own index, in the order
the calls opened) and its argument or input deltas follow it. A call
whose pieces never streamed gets its whole text from its item's end, a
reasoning item's end brings its sealed reasoning (``thinking_blocks``), and
a web search's end the search as Anthropic's server blocks
(``ANTHROPIC_BLOCK``, as the gateway's own searches stream).
``response.failed`` and ``error`` raise ``UpstreamFailed``; the rest of the
events (the item and part bookkeeping, the ``.done`` copies) say nothing
chat would.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from interlock.chat_markers import ANTHROPIC_BLOCK
from interlock.providers.base import JSONDict
from interlock.providers.openai_responses_answer import (
    chat_logprobs,
    failure,
    finish_reason,
    sealed_reasoning,
    search_blocks,
    url_citation,
    usage_of,
)
from interlock.providers.shapes import chunk_bytes, chunk_choice
from interlock.providers.upstream_errors import ShapeError

__all__ = ["ChunkWriter"]


@dataclass(slots=True)
class _Call:
    index: int  # chat's
    kind: str  # function | custom
    streamed: bool = False


class ChunkWriter:
    def __init__(self, model: str, include_usage: bool):
        self._model = model
        self._include_usage = include_usage
        self._id = ""
        self._created = int(time.time())
        self._calls: dict[Any, _Call] = {}  # by item id
        self._said = 0  # content characters so far: where a citation's part starts
        self._part_start = 0
        self._summaries: set[tuple[Any, Any]] = set()  # (item, summary index) begun
        self._searches = 0
        self._started = False
        self.finished = False

    def feed(self, event: JSONDict) -> list[bytes]:
        kind = event.get("type")
        if kind == "response.created":
            return self._start(event.get("response"))
        if kind == "error":
            raise failure(event)
        if kind == "response.failed":
            raise failure((event.get("response") or {}).get("error"))
        if not self._started:
            if kind == "response.in_progress" or kind == "response.queued":
                return []
            raise ShapeError(f"upstream sent `{kind}` before response.created")
        if kind == "response.output_text.delta":
            return self._text(event)
        if kind == "response.content_part.added":
            self._part_start = self._said
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            return self._reasoning(event)
        elif kind == "response.refusal.delta":
            return [self._chunk({"refusal": event.get("delta") or ""})]
        elif kind == "response.output_item.added":
            return self._opened(event.get("item"))
        elif kind in (
            "response.function_call_arguments.delta",
            "response.custom_tool_call_input.delta",
        ):
            return self._piece(event.get("item_id"), event.get("delta"))
        elif kind == "response.output_item.done":
            return self._closed(event.get("item"))
        elif kind == "response.output_text.annotation.added":
            annotation = event.get("annotation")
            if isinstance(annotation, dict) and annotation.get("type") == "url_citation":
                return [self._chunk({"annotations": [url_citation(annotation, self._part_start)]})]
        elif kind in ("response.completed", "response.incomplete"):
            return self._finish(event.get("response"))
        return []

    def _start(self, response: Any) -> list[bytes]:
        if not isinstance(response, dict) or not isinstance(response.get("id"), str):
            raise ShapeError("upstream response.created has no response id")
        self._id, self._started = response["id"], True
        self._model = response.get("model") or self._model
        if isinstance(response.get("created_at"), int):
            self._created = response["created_at"]
        return [self._chunk({"role": "assistant", "content": ""})]

    def _text(self, event: JSONDict) -> list[bytes]:
        delta = event.get("delta") or ""
        if not delta:
            return []
        self._said += len(delta)
        logprobs = chat_logprobs(event.get("logprobs"))
        choice = chunk_choice(0, {"content": delta})
        if logprobs:
            choice["logprobs"] = {"content": logprobs}
        return [self._chunk_of(choice)]

    def _reasoning(self, event: JSONDict) -> list[bytes]:
        delta = event.get("delta") or ""
        if not delta:
            return []
        part = (event.get("item_id"), event.get("summary_index", event.get("content_index")))
        if part not in self._summaries:  # a summary's next part: set apart as a paragraph
            if self._summaries:
                delta = "\n\n" + delta
            self._summaries.add(part)
        return [self._chunk({"reasoning_content": delta})]

    def _opened(self, item: Any) -> list[bytes]:
        if not isinstance(item, dict) or item.get("type") not in (
            "function_call",
            "custom_tool_call",
        ):
            return []
        kind = "custom" if item["type"] == "custom_tool_call" else "function"
        call = _Call(len(self._calls), kind)
        self._calls[item.get("id")] = call
        opened = {"name": item.get("name"), ("input" if kind == "custom" else "arguments"): ""}
        entry = {"index": call.index, "id": item.get("call_id"), "type": kind, kind: opened}
        return [self._chunk({"tool_calls": [entry]})]

    def _piece(self, item_id: Any, piece: Any) -> list[bytes]:
        call = self._calls.get(item_id)
        if call is None:
            raise ShapeError("upstream streamed a tool call's arguments before its item")
        if not piece:
            return []
        call.streamed = True
        return [self._chunk({"tool_calls": [self._call_piece(call, piece)]})]

    def _closed(self, item: Any) -> list[bytes]:
        if not isinstance(item, dict):
            return []
        if item.get("type") == "reasoning":
            sealed = sealed_reasoning(item)
            return [self._chunk({"thinking_blocks": sealed})] if sealed else []
        if item.get("type") == "web_search_call":
            self._searches += 1
            return [self._chunk({ANTHROPIC_BLOCK: block}) for block in search_blocks(item)]
        call = self._calls.get(item.get("id"))
        if call is None or call.streamed:
            return []
        whole = item.get("input" if call.kind == "custom" else "arguments")
        if not whole:
            return []
        call.streamed = True
        return [self._chunk({"tool_calls": [self._call_piece(call, whole)]})]

    @staticmethod
    def _call_piece(call: _Call, piece: str) -> JSONDict:
        field = "input" if call.kind == "custom" else "arguments"
        return {"index": call.index, call.kind: {field: piece}}

    def _finish(self, response: Any) -> list[bytes]:
        if not isinstance(response, dict):
            raise ShapeError("upstream's last event has no response")
        self.finished = True
        reason = finish_reason(response, bool(self._calls))
        tier = response.get("service_tier")  # the one that served it, known at the end
        finish = chunk_choice(0, {}, reason)
        chunks = [self._chunk_bytes([finish], None, tier if isinstance(tier, str) else None)]
        if self._include_usage:
            chunks.append(self._chunk_bytes([], usage_of(response.get("usage"), self._searches)))
        return chunks

    def _chunk(self, delta: JSONDict) -> bytes:
        return self._chunk_of(chunk_choice(0, delta))

    def _chunk_of(self, choice: JSONDict) -> bytes:
        return self._chunk_bytes([choice], None)

    def _chunk_bytes(
        self, choices: list[JSONDict], usage: JSONDict | None, service_tier: str | None = None
    ) -> bytes:
        return chunk_bytes(
            self._id,
            self._created,
            self._model,
            choices,
            include_usage=self._include_usage,
            usage=usage,
            service_tier=service_tier,
        )
