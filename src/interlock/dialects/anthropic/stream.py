"""OpenAI ``chat.completion.chunk`` objects -> Anthropic stream events (no I/O).

The events come in the order Anthropic documents::

    message_start
    (content_block_start, content_block_delta*, content_block_stop)*
    message_delta          stop_reason, stop_sequence, usage
    message_stop

with ``ping`` events wherever the edge has to keep the connection alive.
One block is open at a time, as Anthropic streams them: text
(``text_delta``), thinking (``thinking_delta``, then ``signature_delta``
when an Anthropic upstream signed it) and tool calls (``input_json_delta``
argument pieces). An Anthropic upstream's server tool blocks and citations
come as it streamed them (``chat_markers``): a server tool call's input in
one piece, a result whole in its block's start.

OpenAI streams may interleave parallel tool calls (each piece names its
call's ``index``); Anthropic's blocks may not. The first call streams as it
comes; a call that opens while another is open is held back, its pieces
kept, and sent whole, in order, once the open one is done (at the next
text, thinking or the end). With one call, or calls that come one after
another's last piece, nothing waits but the calls after the first.

Every chunk of a stream goes through here, so the frequent events (deltas,
block starts and stops, ``message_start``) are written from byte templates
around the JSON values they carry: the same bytes ``event`` would write. A
text chunk that repeats the one before but for its text is not parsed
(``interlock.dialects.chunks``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.chat_markers import (
    ANTHROPIC_BLOCK,
    ANTHROPIC_CITATION,
    ANTHROPIC_TEXT,
    REASONING_FIELDS,
    is_openai_reasoning,
    reasoning_text,
)
from interlock.dialects.anthropic.answer import message_id, new_tool_id, stop_reason, usage
from interlock.dialects.chunks import RepeatedChunks
from interlock.errors import UpstreamProtocolError

__all__ = ["EventTranslator", "event"]

JSONDict = dict[str, Any]


def event(kind: str, data: JSONDict) -> bytes:
    """One server-sent event as Anthropic writes them: its type on the
    ``event:`` line and in the data's ``type``."""
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"


def _delta_head(kind: str, name: str) -> bytes:
    """``content_block_delta`` of one ``kind`` up to its value: ``% index``,
    then the JSON value of ``name`` and ``_DELTA_END``."""
    return (
        b'event: content_block_delta\ndata: {"type":"content_block_delta","index":%d,'
        b'"delta":{"type":"' + kind.encode() + b'","' + name.encode() + b'":'
    )


def _delta(head: bytes, index: int, value: bytes) -> bytes:
    return head % index + value + _DELTA_END


_PING = event("ping", {})
# % (id, model): an empty message. Upstreams report usage at the end: message_delta carries it.
_MESSAGE_START = (
    b'event: message_start\ndata: {"type":"message_start","message":{"id":%b,"type":"message",'
    b'"role":"assistant","model":%b,"content":[],"stop_reason":null,"stop_sequence":null,'
    b'"usage":{"input_tokens":0,"output_tokens":0}}}\n\n'
)
_MESSAGE_STOP = event("message_stop", {})
_DELTA_END = b"}}\n\n"
_TEXT_DELTA = _delta_head("text_delta", "text")
_THINKING_DELTA = _delta_head("thinking_delta", "thinking")
_SIGNATURE_DELTA = _delta_head("signature_delta", "signature")
_JSON_DELTA = _delta_head("input_json_delta", "partial_json")
_BLOCK_START = (
    b'event: content_block_start\ndata: {"type":"content_block_start","index":%d,'
    b'"content_block":%b}\n\n'
)
_BLOCK_STOP = b'event: content_block_stop\ndata: {"type":"content_block_stop","index":%d}\n\n'
_TEXT_START = b'{"type":"text","text":""}'
_THINKING_START = b'{"type":"thinking","thinking":"","signature":""}'

# The delta fields a chunk's events come from.
_READ = frozenset(
    (
        *REASONING_FIELDS,
        "thinking_blocks",
        "content",
        "refusal",
        "tool_calls",
        ANTHROPIC_BLOCK,
        ANTHROPIC_TEXT,
        ANTHROPIC_CITATION,
    )
)
_CITATIONS_DELTA = _delta_head("citations_delta", "citation")


@dataclass(slots=True)
class _Call:
    """One tool call, by its OpenAI ``index``."""

    id: str
    name: str
    block: int | None = None  # its Anthropic block index, once started
    held: list[str] = field(default_factory=list)  # pieces while it waits its turn


class EventTranslator:
    """Feed each chunk (bytes of its JSON object) and get the events for it;
    ``finish`` when the chunks end. ``ping`` while waiting."""

    def __init__(self, model: str, stop_sequences: Sequence[str] = ()):
        self._model = model  # until a chunk names the answering model
        self._stops = tuple(stop_sequences)
        self._started = False
        self._blocks = 0  # blocks started so far: the next one's index
        self._open: str | None = None  # "text", "thinking", "redacted_thinking" or "tool"
        self._open_call: _Call | None = None
        self._calls: dict[int, _Call] = {}
        self._finish: Any = None
        self._matched: Any = None  # vLLM's stop_reason: the stop sequence that matched
        self._usage: Any = None
        self._repeats = RepeatedChunks(_READ)
        # The open text block's delta event up to its text, while one is open:
        # the next piece of the text is the most frequent event.
        self._text_head: bytes | None = None

    def ping(self) -> bytes:
        return self._start({}) + _PING

    def feed(self, raw: bytes) -> bytes:
        repeats = self._repeats
        literal = repeats.match(raw)
        if literal is not None:
            if repeats.field != "content":
                return self._thinking(literal)
            head = self._text_head
            if head is not None:
                return head + literal + _DELTA_END
            return self._text(literal)
        try:
            chunk = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream sent a stream chunk that is not JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream sent a stream chunk that is not an object")
        found = chunk.get("usage")
        if isinstance(found, dict):
            self._usage = found
        choices = chunk.get("choices")
        if not choices:  # usage, or Azure's prompt-filter results: no id or model yet
            return b""
        out = b"" if self._started else self._start(chunk)
        for choice in choices:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out += self._choice(choice)
        self._repeats.learn(raw, chunk)
        return out

    def finish(self, reported: JSONDict | None = None) -> bytes:
        """``message_delta`` and ``message_stop``, after closing what is open.
        ``reported``: the answer's usage, where no chunk carried it (the
        edge asks for none: the pipeline's record has it)."""
        out = self._start({}) + self._close()
        choice = {"finish_reason": self._finish, "stop_reason": self._matched}
        reason, sequence = stop_reason(choice, bool(self._calls), self._stops)
        delta = {"stop_reason": reason, "stop_sequence": sequence}
        counted = usage(self._usage if self._usage is not None else reported)
        return out + event("message_delta", {"delta": delta, "usage": counted}) + _MESSAGE_STOP

    # -- the message ----------------------------------------------------------

    def _start(self, chunk: JSONDict) -> bytes:
        if self._started:
            return b""
        self._started = True
        model = chunk.get("model") or self._model
        return _MESSAGE_START % (orjson.dumps(message_id(chunk.get("id"))), orjson.dumps(model))

    def _choice(self, choice: JSONDict) -> bytes:
        out = b""
        delta = choice.get("delta")
        if isinstance(delta, dict):
            reasoning = reasoning_text(delta)
            if reasoning is not None:
                out += self._thinking(orjson.dumps(reasoning))
            blocks = delta.get("thinking_blocks")
            if blocks:
                for block in blocks:
                    if isinstance(block, dict):
                        out += self._signed(block)
            out += self._anthropic_own(delta)
            for name in ("content", "refusal"):
                text = delta.get(name)
                if text and isinstance(text, str):
                    out += self._text(orjson.dumps(text))
            pieces = delta.get("tool_calls")
            if pieces:
                for piece in pieces:
                    if isinstance(piece, dict):
                        out += self._tool_piece(piece)
        if choice.get("finish_reason"):
            self._finish = choice["finish_reason"]
            self._matched = choice.get("stop_reason")
        return out

    def _anthropic_own(self, delta: JSONDict) -> bytes:
        """An Anthropic upstream's server tool blocks and citations, as it
        streamed them (``chat_markers``)."""
        out = b""
        block = delta.get(ANTHROPIC_BLOCK)
        if isinstance(block, dict):
            out += self._server_block(block)
        if delta.get(ANTHROPIC_TEXT):
            out += self._close()  # the next text opens a block of its own
        citation = delta.get(ANTHROPIC_CITATION)
        if isinstance(citation, dict):
            if self._open != "text":
                out += self._switch("text", _TEXT_START)
            out += _delta(_CITATIONS_DELTA, self._blocks - 1, orjson.dumps(citation))
        return out

    def _server_block(self, block: JSONDict) -> bytes:
        """A whole server block: a call streams its input as one piece, as a
        ``tool_use`` does; a result comes whole in its start."""
        if "input" not in block:
            return self._switch("server", orjson.dumps(block)) + self._close()
        opened = self._switch("server", orjson.dumps({**block, "input": {}}))
        json = orjson.dumps(orjson.dumps(block["input"]).decode())
        return opened + _delta(_JSON_DELTA, self._blocks - 1, json) + self._close()

    # -- blocks ---------------------------------------------------------------

    def _text(self, text: bytes) -> bytes:
        """A text delta: ``text`` is the JSON string."""
        out = b"" if self._open == "text" else self._switch("text", _TEXT_START)
        return out + _delta(_TEXT_DELTA, self._blocks - 1, text)

    def _thinking(self, text: bytes) -> bytes:
        """A thinking delta: ``text`` is the JSON string."""
        out = b"" if self._open == "thinking" else self._switch("thinking", _THINKING_START)
        return out + _delta(_THINKING_DELTA, self._blocks - 1, text)

    def _signed(self, block: JSONDict) -> bytes:
        """A whole thinking block (the Anthropic adapter sends it as its
        block ends): its signature for the open thinking block, or the
        block itself when its text was not streamed. OpenAI's sealed
        reasoning has no place here: its summary streamed as the text."""
        if is_openai_reasoning(block):
            return b""
        if block.get("type") == "redacted_thinking":
            start = {"type": "redacted_thinking", "data": str(block.get("data") or "")}
            return self._switch("redacted_thinking", orjson.dumps(start)) + self._close()
        out = b""
        if self._open != "thinking":
            out += self._switch("thinking", _THINKING_START)
            text = block.get("thinking")
            if isinstance(text, str) and text:
                out += _delta(_THINKING_DELTA, self._blocks - 1, orjson.dumps(text))
        signature = block.get("signature")
        if isinstance(signature, str) and signature:
            out += _delta(_SIGNATURE_DELTA, self._blocks - 1, orjson.dumps(signature))
        return out + self._close()

    def _tool_piece(self, piece: JSONDict) -> bytes:
        index = piece.get("index", 0)
        function = piece.get("function")
        function = function if isinstance(function, dict) else {}
        call = self._calls.get(index)
        out = b""
        if call is None:
            call_id = piece.get("id")
            call = _Call(call_id if isinstance(call_id, str) and call_id else new_tool_id(), "")
            self._calls[index] = call
        if not call.name and isinstance(function.get("name"), str):
            call.name = function["name"]
        if call.block is None and self._open != "tool":
            out += self._close() + self._start_call(call)
        arguments = function.get("arguments")
        if not isinstance(arguments, str) or not arguments:
            return out
        if call is self._open_call:
            out += _delta(_JSON_DELTA, self._blocks - 1, orjson.dumps(arguments))
        elif call.block is None:
            call.held.append(arguments)  # waits for the open call to end
        else:
            raise UpstreamProtocolError("upstream sent arguments for a tool call that had ended")
        return out

    def _start_call(self, call: _Call) -> bytes:
        call.block = self._blocks
        self._open_call = call
        start = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        return self._begin("tool", orjson.dumps(start))

    def _switch(self, kind: str, start: bytes) -> bytes:
        return self._close() + self._begin(kind, start)

    def _begin(self, kind: str, block: bytes) -> bytes:
        """Open a block: ``block`` is its ``content_block`` as JSON."""
        self._open = kind
        index, self._blocks = self._blocks, self._blocks + 1
        self._text_head = _TEXT_DELTA % index if kind == "text" else None
        return _BLOCK_START % (index, block)

    def _close(self) -> bytes:
        """Close the open block; after a tool call, send the calls held back."""
        if self._open is None:
            return b""
        out = _BLOCK_STOP % (self._blocks - 1)
        was_tool, self._open, self._open_call = self._open == "tool", None, None
        self._text_head = None
        if was_tool:
            for call in self._calls.values():
                if call.block is None:
                    out += self._start_call(call)
                    if call.held:
                        json = orjson.dumps("".join(call.held))
                        out += _delta(_JSON_DELTA, self._blocks - 1, json)
                    out += self._close()  # sends any later ones in turn
                    break
        return out
