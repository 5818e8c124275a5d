"""Anthropic stream events -> OpenAI ``chat.completion.chunk`` bytes (no I/O)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.chat_markers import ANTHROPIC_BLOCK, ANTHROPIC_CITATION, ANTHROPIC_TEXT
from interlock.providers.anthropic_answer import (
    finish_reason,
    matched_stop,
    reasoning_tokens,
    tool_use_of,
    url_citation,
    usage_of,
)
from interlock.providers.anthropic_wire import ShapeError
from interlock.providers.base import JSONDict
from interlock.providers.shapes import (
    chunk_bytes,
    chunk_choice,
    tool_call_arguments_piece,
    tool_call_opened,
)
from interlock.tokens import TokenCounter

__all__ = ["StreamTranslator"]


@dataclass(slots=True)
class _Block:
    """One open content block of a streamed message."""

    kind: str  # text, thinking, redacted_thinking, tool, json, server
    tool_index: int = -1
    thinking: list[str] = field(default_factory=list)
    signature: str = ""
    data: str = ""
    # A server block as it started, and its input's JSON pieces (a call's).
    whole: JSONDict | None = None
    pieces: list[str] = field(default_factory=list)
    # A text block's first character in the message's content, and its citations.
    start: int = 0
    citations: list[JSONDict] = field(default_factory=list)


class StreamTranslator:
    """Anthropic stream events in, OpenAI ``chat.completion.chunk`` bytes out.

    Pure state, no I/O: ``feed`` each parsed event; ``finished`` turns true at
    ``message_stop``. Content blocks are tracked by their ``index``, so tool
    calls keep their own OpenAI index even if their events interleave.
    """

    def __init__(
        self,
        model: str,
        include_usage: bool,
        json_tool: str | None = None,
        counter: TokenCounter | None = None,
    ):
        self._include_usage = include_usage
        self._json_tool = json_tool
        self._counter = counter
        self._id = ""
        self._model = model
        self._created = int(time.time())
        self._usage: JSONDict = {}
        self._stop_reason: Any = None
        self._stop_sequence: Any = None
        # Once a server block has come, each text block starts apart (its citations are its own).
        self._server_blocks = False
        self._blocks: dict[Any, _Block] = {}
        self._chars = 0  # of content so far: where a cited text block starts
        self._calls = 0
        self._thinking: list[str] = []
        self._started = False
        self.finished = False

    def feed(self, event: JSONDict) -> list[bytes]:
        kind = event.get("type")
        if kind == "message_start":
            return self._start(event.get("message"))
        if kind == "ping":
            return []
        if not self._started:
            raise ShapeError(f"upstream sent `{kind}` before message_start")
        if kind == "content_block_start":
            return self._open(event.get("index"), event.get("content_block"))
        if kind == "content_block_delta":
            return self._delta(event.get("index"), event.get("delta"))
        if kind == "content_block_stop":
            return self._close(event.get("index"))
        if kind == "message_delta":
            delta = event.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                self._stop_reason = delta["stop_reason"]
                self._stop_sequence = delta.get("stop_sequence")
            self._addusage_of(event.get("usage"))
        elif kind == "message_stop":
            return self._finish()
        return []  # event types Anthropic may add later

    def _start(self, message: Any) -> list[bytes]:
        if not isinstance(message, dict) or not isinstance(message.get("id"), str):
            raise ShapeError("upstream message_start has no message id")
        self._id, self._started = message["id"], True
        self._model = message.get("model") or self._model
        self._addusage_of(message.get("usage"))
        return [self._delta_chunk({"role": "assistant", "content": ""})]

    def _open(self, index: Any, block: Any) -> list[bytes]:
        if not isinstance(block, dict):
            raise ShapeError("upstream content_block_start has no content_block")
        kind = block.get("type")
        if kind == "tool_use":
            call_id, name, _ = tool_use_of(block)
            if name == self._json_tool:
                self._blocks[index] = _Block("json")
                return []
            self._blocks[index] = _Block("tool", self._calls)
            self._calls += 1
            return [self._delta_chunk(tool_call_opened(self._calls - 1, call_id, name))]
        if kind == "redacted_thinking":
            self._blocks[index] = _Block(kind, data=str(block.get("data", "")))
            return []
        if kind in ("text", "thinking"):
            signature = str(block.get("signature") or "")
            self._blocks[index] = _Block(kind, signature=signature, start=self._chars)
            opened = self._delta(index, {**block, "type": f"{kind}_delta"})
            if kind == "text" and self._server_blocks:
                return [self._delta_chunk({ANTHROPIC_TEXT: True}), *opened]
            return opened
        # A server tool's call or result: sent whole as it ends, for the Messages edge.
        self._blocks[index] = _Block("server", whole=block)
        return []

    def _delta(self, index: Any, delta: Any) -> list[bytes]:
        kind = delta.get("type") if isinstance(delta, dict) else None
        if kind is None:
            return []
        assert isinstance(delta, dict)
        block = self._blocks.get(index)
        if kind == "text_delta" and delta.get("text"):
            text = str(delta["text"])
            self._chars += len(text)
            return [self._delta_chunk({"content": text})]
        if kind == "thinking_delta" and delta.get("thinking"):
            piece = str(delta["thinking"])
            self._thinking.append(piece)
            if block is not None:
                block.thinking.append(piece)
            return [self._delta_chunk({"reasoning_content": piece})]
        if kind == "signature_delta" and block is not None:
            block.signature += str(delta.get("signature") or "")
        elif kind == "citations_delta" and isinstance(delta.get("citation"), dict):
            if block is not None:
                block.citations.append(delta["citation"])
            return [self._delta_chunk({ANTHROPIC_CITATION: delta["citation"]})]
        elif kind == "input_json_delta" and block is not None and block.kind == "server":
            block.pieces.append(str(delta.get("partial_json") or ""))
        elif kind == "input_json_delta":
            if block is None or block.kind not in ("tool", "json"):
                raise ShapeError("upstream input_json_delta for a block that is not a tool call")
            json = delta.get("partial_json")
            if not isinstance(json, str) or not json:
                return []
            if block.kind == "json":
                return [self._delta_chunk({"content": json})]
            return [self._delta_chunk(tool_call_arguments_piece(block.tool_index, json))]
        return []

    def _close(self, index: Any) -> list[bytes]:
        block = self._blocks.pop(index, None)
        if block is not None and block.whole is not None:
            return [self._delta_chunk({ANTHROPIC_BLOCK: self._server_block(block.whole, block)})]
        if block is not None and block.citations:  # chat's url_citations, as its text ends
            cited = (url_citation(c, block.start, self._chars) for c in block.citations)
            annotations = [annotation for annotation in cited if annotation is not None]
            return [self._delta_chunk({"annotations": annotations})] if annotations else []
        if block is None or block.kind not in ("thinking", "redacted_thinking"):
            return []
        if block.kind == "thinking":
            whole = {
                "type": "thinking",
                "thinking": "".join(block.thinking),
                "signature": block.signature,
            }
        else:
            whole = {"type": "redacted_thinking", "data": block.data}
        return [self._delta_chunk({"thinking_blocks": [whole]})]

    def _server_block(self, whole: JSONDict, block: _Block) -> JSONDict:
        self._server_blocks = True
        json = "".join(block.pieces)
        if not json:
            return whole
        try:
            return {**whole, "input": orjson.loads(json)}
        except orjson.JSONDecodeError:
            raise ShapeError("upstream server tool input is not JSON") from None

    def _addusage_of(self, usage: Any) -> None:
        # message_delta counts are cumulative, so later values replace earlier ones.
        if isinstance(usage, dict):
            self._usage.update({k: v for k, v in usage.items() if v is not None})

    def _finish(self) -> list[bytes]:
        self.finished = True
        finish = finish_reason(self._stop_reason, self._calls > 0)
        choice = chunk_choice(0, {}, finish)
        choice.update(matched_stop(self._stop_reason, self._stop_sequence))
        chunks = [self._chunk([choice])]
        if self._include_usage:
            reasoning = reasoning_tokens(self._usage, "".join(self._thinking), self._counter)
            chunks.append(self._chunk([], usage_of(self._usage, reasoning)))
        return chunks

    def _delta_chunk(self, delta: JSONDict) -> bytes:
        return self._chunk([chunk_choice(0, delta)])

    def _chunk(self, choices: list[JSONDict], usage: JSONDict | None = None) -> bytes:
        return chunk_bytes(
            self._id,
            self._created,
            self._model,
            choices,
            include_usage=self._include_usage,
            usage=usage,
        )
