"""OpenAI chat chunks as the Responses API's semantic stream events.

``ResponseEvents`` is fed one ``chat.completion.chunk`` at a time and hands
back the events it makes, each with its ``type`` and the next
``sequence_number``; no I/O. The stream it writes:

    response.created, response.in_progress
    per output item, in output_index order of opening:
      response.output_item.added
      reasoning: reasoning_summary_part.added, reasoning_summary_text.delta...,
                 reasoning_summary_text.done, reasoning_summary_part.done
      message:   content_part.added, output_text.delta..., output_text.done,
                 content_part.done
      function_call: function_call_arguments.delta..., function_call_arguments.done
      response.output_item.done
    response.completed (or response.incomplete), with the whole Response

Reasoning and text are one item each while they last: reasoning closes when
text or a tool call starts, text when a tool call starts. Tool calls stay
open until the end, because a model's parallel calls may interleave their
argument pieces (each keeps its own ``output_index``). ``error`` is the
event for a failure after the stream started. The finished Response is
``response`` once ``finish`` has run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from interlock.dialects.responses.answer import (
    JSONDict,
    finished,
    function_call_item,
    message_item,
    new_id,
    output_text,
    reasoning_item,
    status_of,
)

__all__ = ["ResponseEvents"]


@dataclass(slots=True)
class _Item:
    """An output item being streamed."""

    kind: str  # reasoning | message | function_call
    id: str
    index: int
    text: str = ""  # summary, text or arguments so far
    call_id: str = ""
    name: str = ""
    blocks: list[JSONDict] = field(default_factory=list)  # signed thinking
    done: JSONDict | None = None  # the finished item


class ResponseEvents:
    def __init__(self, shell: JSONDict):
        self._shell = shell
        self._sequence = 0
        self._items: list[_Item] = []
        self._reasoning: _Item | None = None
        self._message: _Item | None = None
        self._calls: dict[int, _Item] = {}  # by the chunk's tool-call index
        self._finish_reason: str | None = None
        self._usage: JSONDict | None = None
        self._model: str | None = None
        self.response: JSONDict | None = None

    def start(self) -> list[JSONDict]:
        return [
            self._event("response.created", response=self._shell),
            self._event("response.in_progress", response=self._shell),
        ]

    def feed(self, chunk: JSONDict) -> list[JSONDict]:
        """The events for one chat chunk (often one, sometimes none)."""
        events: list[JSONDict] = []
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if chunk.get("model"):
            self._model = chunk["model"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Responses has one answer; n is not a Responses parameter
            delta = choice.get("delta") or {}
            if delta.get("reasoning_content"):
                events += self._reasoning_delta(delta["reasoning_content"])
            if delta.get("thinking_blocks"):
                events += self._thinking(delta["thinking_blocks"])
            if delta.get("content"):
                events += self._text_delta(delta["content"])
            for piece in delta.get("tool_calls") or ():
                events += self._call_piece(piece)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        return events

    def finish(self) -> list[JSONDict]:
        """Close what is open; the last event carries the whole Response."""
        events = self._close_reasoning() + self._close_message()
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            events += self._close_call(call)
        if not self._items:  # an empty answer is still one (empty) message
            events = self._text_delta("") + self._close_message()
        output = [item.done for item in self._items if item.done is not None]
        self.response = finished(self._shell, output, self._finish_reason, self._usage, self._model)
        kind = (
            "response.completed"
            if self.response["status"] == "completed"
            else "response.incomplete"
        )
        return [*events, self._event(kind, response=self.response)]

    def error(self, code: str | None, message: str, param: str | None = None) -> JSONDict:
        return self._event("error", code=code, message=message, param=param)

    # -- items -------------------------------------------------------------

    def _open(self, kind: str, prefix: str, **fields: Any) -> tuple[_Item, list[JSONDict]]:
        item = _Item(kind, new_id(prefix), len(self._items), **fields)
        self._items.append(item)
        added = self._event(
            "response.output_item.added", output_index=item.index, item=self._snapshot(item)
        )
        return item, [added]

    def _snapshot(self, item: _Item, status: str = "in_progress") -> JSONDict:
        if item.kind == "message":
            parts = [output_text(item.text)] if status != "in_progress" else []
            return message_item(item.id, parts, status)
        if item.kind == "function_call":
            return function_call_item(item.id, item.call_id, item.name, item.text, status)
        return reasoning_item(item.id, item.text, item.blocks or None)

    def _reasoning_delta(self, text: str) -> list[JSONDict]:
        events = self._close_message()
        item = self._reasoning
        if item is None:
            item, opened = self._open("reasoning", "rs")
            self._reasoning = item
            part = {"type": "summary_text", "text": ""}
            events += opened
            events.append(
                self._at(item, "response.reasoning_summary_part.added", summary_index=0, part=part)
            )
        item.text += text
        events.append(
            self._at(item, "response.reasoning_summary_text.delta", summary_index=0, delta=text)
        )
        return events

    def _thinking(self, blocks: list[JSONDict]) -> list[JSONDict]:
        events: list[JSONDict] = []
        if self._reasoning is None:  # signed thinking without readable text (redacted)
            self._reasoning, events = self._open("reasoning", "rs")
        self._reasoning.blocks += blocks
        return events

    def _close_reasoning(self) -> list[JSONDict]:
        item, self._reasoning = self._reasoning, None
        if item is None:
            return []
        events = []
        if item.text:
            part = {"type": "summary_text", "text": item.text}
            events.append(
                self._at(
                    item, "response.reasoning_summary_text.done", summary_index=0, text=item.text
                )
            )
            events.append(
                self._at(item, "response.reasoning_summary_part.done", summary_index=0, part=part)
            )
        return [*events, self._item_done(item, "completed")]

    def _text_delta(self, text: str) -> list[JSONDict]:
        events = self._close_reasoning()
        item = self._message
        if item is None:
            item, opened = self._open("message", "msg")
            self._message = item
            events += opened
            events.append(
                self._at(item, "response.content_part.added", content_index=0, part=output_text(""))
            )
        if not text:
            return events
        item.text += text
        events.append(
            self._at(item, "response.output_text.delta", content_index=0, delta=text, logprobs=[])
        )
        return events

    def _close_message(self) -> list[JSONDict]:
        item, self._message = self._message, None
        if item is None:
            return []
        status, _ = status_of(self._finish_reason)
        return [
            self._at(
                item, "response.output_text.done", content_index=0, text=item.text, logprobs=[]
            ),
            self._at(
                item, "response.content_part.done", content_index=0, part=output_text(item.text)
            ),
            self._item_done(item, status),
        ]

    def _call_piece(self, piece: JSONDict) -> list[JSONDict]:
        position = piece.get("index", 0)
        function = piece.get("function") or {}
        events: list[JSONDict] = []
        call = self._calls.get(position)
        if call is None:
            events = self._close_reasoning() + self._close_message()
            call, opened = self._open(
                "function_call",
                "fc",
                call_id=piece.get("id") or new_id("call"),
                name=function.get("name") or "",
            )
            self._calls[position] = call
            events += opened
        arguments = function.get("arguments")
        if arguments:
            call.text += arguments
            events.append(self._at(call, "response.function_call_arguments.delta", delta=arguments))
        return events

    def _close_call(self, call: _Item) -> list[JSONDict]:
        return [
            self._at(
                call, "response.function_call_arguments.done", name=call.name, arguments=call.text
            ),
            self._item_done(call, "completed"),
        ]

    def _item_done(self, item: _Item, status: str) -> JSONDict:
        item.done = self._snapshot(item, status)
        return self._event("response.output_item.done", output_index=item.index, item=item.done)

    # -- events ------------------------------------------------------------

    def _at(self, item: _Item, kind: str, **fields: Any) -> JSONDict:
        return self._event(kind, item_id=item.id, output_index=item.index, **fields)

    def _event(self, kind: str, **fields: Any) -> JSONDict:
        event = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return event
