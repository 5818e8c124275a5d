"""ConverseStream events -> OpenAI ``chat.completion.chunk`` bytes (no I/O).

``bedrock.py`` decodes the event-stream frames and feeds each event here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from interlock.providers.base import JSONDict
from interlock.providers.bedrock_answer import (
    blob,
    completion_id,
    finish_reason,
    reasoning_tokens,
    redacted_thinking,
    usage,
)
from interlock.providers.bedrock_wire import ShapeError
from interlock.providers.shapes import (
    chunk_bytes,
    chunk_choice,
    tool_call_arguments_piece,
    tool_call_opened,
)
from interlock.tokens import TokenCounter

__all__ = ["ChunkStream"]


@dataclass(slots=True)
class _Block:
    """A streamed content block that needs state: a tool call (``tool_index``
    counts OpenAI tool calls), the structured answer, or reasoning (kept
    whole, to hand back as a thinking block when it stops)."""

    kind: str  # tool, json, reasoning
    tool_index: int = -1
    has_input: bool = False
    thinking: list[str] = field(default_factory=list)
    signature: str = ""
    redacted: bytearray = field(default_factory=bytearray)


class ChunkStream:
    """ConverseStream events in, ``chat.completion.chunk`` bytes out.

    Pure state, no I/O: ``feed`` each event (its ``:event-type`` and JSON
    payload); ``finished`` turns true at the ``metadata`` event that follows
    ``messageStop``; ``close`` once the stream has ended. Blocks are tracked
    by ``contentBlockIndex``, so parallel tool calls whose deltas interleave
    keep their own OpenAI index. ``counter`` estimates reasoning tokens.
    """

    def __init__(
        self,
        model: str,
        json_tool: str | None,
        include_usage: bool,
        counter: TokenCounter | None = None,
    ):
        self._id = completion_id()
        self._created = int(time.time())
        self._model = model
        self._json_tool = json_tool
        self._include_usage = include_usage
        self._counter = counter
        self._blocks: dict[Any, _Block] = {}  # by contentBlockIndex
        self._calls = 0
        self._thinking: list[str] = []
        self._started = False
        self._stopped = False
        self.finished = False

    def feed(self, kind: str, event: JSONDict) -> list[bytes]:
        out = self._start() if not self._started and kind != "metadata" else []
        if kind == "contentBlockStart":
            out += self._block_start(event)
        elif kind == "contentBlockDelta":
            out += self._delta(event)
        elif kind == "contentBlockStop":
            out += self._block_stop(event)
        elif kind == "messageStop":
            self._stopped = True
            finish = finish_reason(event.get("stopReason"), self._calls > 0)
            out.append(self._chunk([chunk_choice(0, {}, finish)]))
        elif kind == "metadata" and self._stopped:
            self.finished = True
            if self._include_usage:
                out.append(self._chunk([], self._usage(event.get("usage"))))
        # messageStart is the role chunk; event types added later carry nothing we use.
        return out

    def close(self) -> list[bytes]:
        """The stream ended: usage that no metadata event brought, or an
        error for a stream cut before ``messageStop``."""
        if not self._stopped:
            raise ShapeError("upstream stream ended before messageStop")
        if self.finished or not self._include_usage:
            return []
        self.finished = True
        return [self._chunk([], self._usage(None))]

    def _start(self) -> list[bytes]:
        self._started = True
        return [self._chunk([chunk_choice(0, {"role": "assistant", "content": ""})])]

    def _block_start(self, event: JSONDict) -> list[bytes]:
        start = event.get("start")
        use = start.get("toolUse") if isinstance(start, dict) else None
        if not isinstance(use, dict):
            return []
        key = event.get("contentBlockIndex")
        if use.get("name") == self._json_tool:
            self._blocks[key] = _Block("json")
            return []
        if not isinstance(use.get("toolUseId"), str) or not isinstance(use.get("name"), str):
            raise ShapeError("upstream toolUse start has no `toolUseId` or `name`")
        index, self._calls = self._calls, self._calls + 1
        self._blocks[key] = _Block("tool", index)
        return [self._delta_chunk(tool_call_opened(index, use["toolUseId"], use["name"]))]

    def _delta(self, event: JSONDict) -> list[bytes]:
        delta = event.get("delta")
        if not isinstance(delta, dict):
            raise ShapeError("upstream contentBlockDelta has no `delta` object")
        key = event.get("contentBlockIndex")
        if isinstance(delta.get("text"), str) and delta["text"]:
            return [self._delta_chunk({"content": delta["text"]})]
        if isinstance(delta.get("reasoningContent"), dict):
            return self._reasoning(key, delta["reasoningContent"])
        use = delta.get("toolUse")
        if isinstance(use, dict) and isinstance(use.get("input"), str) and use["input"]:
            return [self._delta_chunk(self._input(key, use["input"]))]
        return []

    def _reasoning(self, key: Any, delta: JSONDict) -> list[bytes]:
        # Converse sends no start event for reasoning: its first delta opens it.
        block = self._blocks.setdefault(key, _Block("reasoning"))
        if block.kind != "reasoning":
            raise ShapeError("upstream sent reasoning into a tool-use block")
        if isinstance(delta.get("signature"), str):
            block.signature += delta["signature"]
        if "redactedContent" in delta:
            block.redacted += blob(delta["redactedContent"])
        text = delta.get("text")
        if not isinstance(text, str) or not text:
            return []
        block.thinking.append(text)
        self._thinking.append(text)
        return [self._delta_chunk({"reasoning_content": text})]

    def _input(self, key: Any, piece: str) -> JSONDict:
        block = self._blocks.get(key)
        if block is None or block.kind == "reasoning":
            raise ShapeError("upstream sent toolUse input for a block it never started")
        block.has_input = True
        if block.kind == "json":
            return {"content": piece}
        return tool_call_arguments_piece(block.tool_index, piece)

    def _block_stop(self, event: JSONDict) -> list[bytes]:
        block = self._blocks.pop(event.get("contentBlockIndex"), None)
        if block is None or block.has_input:
            return []
        if block.kind == "reasoning":
            return [self._delta_chunk({"thinking_blocks": [self._thinking_block(block)]})]
        # A call without arguments streams no input; OpenAI's arguments are still an object.
        if block.kind == "json":
            return [self._delta_chunk({"content": "{}"})]
        return [self._delta_chunk(tool_call_arguments_piece(block.tool_index, "{}"))]

    @staticmethod
    def _thinking_block(block: _Block) -> JSONDict:
        """The whole reasoning block, as ``bedrock_answer.thinking_block`` gives it."""
        if block.redacted:
            return redacted_thinking(bytes(block.redacted))
        return {
            "type": "thinking",
            "thinking": "".join(block.thinking),
            "signature": block.signature or None,
        }

    def _usage(self, raw: Any) -> JSONDict:
        return usage(raw, reasoning_tokens(raw, "".join(self._thinking), self._counter))

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
