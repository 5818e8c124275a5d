"""OpenAI chat chunks as the Responses API's semantic stream events.

``ResponseEvents`` is fed one ``chat.completion.chunk`` at a time (the
bytes of its JSON object) and hands back the server-sent events it makes,
written out (``event: <type>`` + ``data: <json>``), each with its ``type``
and the next ``sequence_number``; no I/O. The stream it writes:

    response.created, response.in_progress
    per output item, in output_index order of opening:
      response.output_item.added
      reasoning: reasoning_summary_part.added, reasoning_summary_text.delta...,
                 reasoning_summary_text.done, reasoning_summary_part.done
      message:   content_part.added, output_text.delta... (and
                 output_text.annotation.added as a cited block ends),
                 output_text.done, content_part.done; a refusal (chat's
                 ``delta.refusal``) is the message's own part, after its
                 text if any: content_part.added, refusal.delta...,
                 refusal.done, content_part.done
      function_call: function_call_arguments.delta..., function_call_arguments.done
      custom_tool_call: custom_tool_call_input.delta..., custom_tool_call_input.done
      shell_call, apply_patch_call, local_shell_call: none (the action comes whole)
      web_search_call (an Anthropic upstream's search): web_search_call.in_progress,
                 .searching, then .completed when its result comes
      response.output_item.done
    response.completed (or response.incomplete), with the whole Response

Reasoning and text are one item each while they last: reasoning closes when
text or a tool call starts, text when a tool call starts. Tool calls stay
open until the end, because a model's parallel calls may interleave their
argument pieces (each keeps its own ``output_index``). ``error`` is the
event for a failure after the stream started. The finished Response is
``response`` once ``finish`` has run, and ``response_json`` as written.

Most chunks make one delta event, so each item writes its deltas from a
byte template made when it opens (its id and ``output_index`` already in
place; the sequence number and the JSON-escaped delta filled in): the same
bytes as serialising the event would give; a message's added and done
events are written from templates the same way. An item's pieces are kept
as one buffer of JSON strings, joined when it closes. A text chunk that
repeats the one before but for its text is not parsed
(``interlock.dialects.chunks``).
The Response is serialised once for the two opening events and once for
the last. Logprobs, where the request asked for them (``include``), ride
on each text delta whose chunk carried some (a chunk with logprobs is
always parsed) and on the message's closing events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from interlock.chat_markers import ANTHROPIC_BLOCK, REASONING_FIELDS, reasoning_text
from interlock.dialects.chunks import RepeatedChunks
from interlock.dialects.responses.answer import (
    JSONDict,
    cited,
    custom_tool_call_item,
    finished,
    function_call_item,
    item_id,
    message_item,
    new_id,
    output_text,
    reasoning_item,
    status_of,
    token_logprobs,
)
from interlock.dialects.responses.builtin_tools import (
    CALL_ITEMS,
    builtin_call,
    id_prefix,
    offered,
    opened_item,
)
from interlock.dialects.responses.namespaces import namespaced
from interlock.dialects.responses.web_search import search_call, with_result
from interlock.errors import UpstreamProtocolError

__all__ = ["ResponseEvents"]

# The delta fields a chunk's events come from.
_READ = frozenset((*REASONING_FIELDS, "thinking_blocks", "content", "tool_calls"))


def _template(value: JSONDict) -> bytes:
    """``value`` serialised, its ``"%b"`` strings left to fill in (``%``)."""
    return orjson.dumps(value).replace(b"%", b"%%").replace(b'"%%b"', b"%b")


_EMPTY_PART = orjson.dumps(output_text(""))
# A message's text part: % (the text as a JSON string, its annotations and logprobs
# as JSON arrays).
_PART = (
    _template(output_text("%b"))
    .replace(b'"annotations":[]', b'"annotations":%b')
    .replace(b'"logprobs":[]', b'"logprobs":%b')
)
# content_part.done's data after the item's reference: % as ``_PART``.
_DONE_PART = b',"content_index":0,"part":' + _PART + b"}"
# A message item as output_item.added/done have it: % (its index, its id and
# status as JSON strings, its content).
_MESSAGE_EVENT = (
    b',"output_index":%d,"item":'
    + _template(message_item("%b", [], "%b")).replace(b'"content":[]', b'"content":%b')
    + b"}"
)

# An event: % (type, type, sequence number, the rest of its data).
_FRAME = b'event: %b\ndata: {"type":"%b","sequence_number":%d%b\n\n'

# Each item kind's delta event: its type, and its data after the item's reference.
_DELTAS = {
    "message": (b"response.output_text.delta", b',"content_index":0,"delta":%b,"logprobs":[]}'),
    # A text delta that came with its tokens' log probabilities (asked for).
    "message+logprobs": (
        b"response.output_text.delta",
        b',"content_index":0,"delta":%b,"logprobs":%b}',
    ),
    "reasoning": (b"response.reasoning_summary_text.delta", b',"summary_index":0,"delta":%b}'),
    "function_call": (b"response.function_call_arguments.delta", b',"delta":%b}'),
    "custom_tool_call": (b"response.custom_tool_call_input.delta", b',"delta":%b}'),
}


# The calls whose arguments stream as deltas; a built-in tool's do not.
_CALL_DELTAS = frozenset(("function_call", "custom_tool_call"))


def _delta_template(kind: str, ref: bytes) -> bytes:
    """An item's delta event, ``ref`` its reference: ``% (sequence number, the
    delta as a JSON string)`` (and its logprobs, for ``message+logprobs``);
    empty for a built-in tool's call, which has none."""
    if kind not in _DELTAS:
        return b""
    name, rest = _DELTAS[kind]
    head = b'event: %b\ndata: {"type":"%b","sequence_number":' % (name, name)
    return head + b"%d" + ref.replace(b"%", b"%%") + rest + b"\n\n"


@dataclass(slots=True)
class _Item:
    """An output item being streamed."""

    # reasoning | message | function_call | custom_tool_call | a built-in
    # tool's call (shell_call ...: ``name`` is the tool) | web_search_call
    # (written by ``_server_block``, never snapshotted)
    kind: str
    id: str
    index: int
    # The summary, text or arguments so far: its pieces, each a JSON string
    # (never an empty one), written one after the other.
    pieces: bytearray = field(default_factory=bytearray)
    call_id: str = ""
    name: str = ""
    namespace: str | None = None  # a namespace's tool (``namespaces.py``)
    blocks: list[JSONDict] = field(default_factory=list)  # signed thinking
    done: JSONDict | None = None  # the finished item
    ref: bytes = b""  # its item_id and output_index, as its events' data has them
    delta: bytes = b""  # its delta event's template (``_delta_template``)
    logprobs: list[JSONDict] | None = None  # a message's, where asked for
    annotations: list[JSONDict] = field(default_factory=list)  # a message's citations
    start: int = 0  # where a message's text starts in the chat answer's content
    # A message opened by a refusal has no text part; its refusal's pieces
    # (JSON strings, as ``pieces``) and that part's index, once one came.
    texted: bool = True
    refusal: bytearray | None = None
    refusal_index: int = 0
    delta_logprobs: bytes = b""  # its delta template with logprobs, once one came

    def literal(self) -> bytes:
        """The pieces as one JSON string. Where two pieces meet is ``""``
        (one's closing quote, the next one's opening), and a quote inside a
        piece is escaped (``\\"``). So, the last closing quote left out, each
        ``""`` found from the left is either such a pair or an escaped quote
        and the closing quote after it; removing the latter leaves its
        backslash escaping the next opening quote instead. Either way what
        is left, with that last quote, is the texts joined, quoted once."""
        return _joined(self.pieces)

    def text(self) -> str:
        text: str = orjson.loads(self.literal())
        return text


def _joined(pieces: bytearray) -> bytes:
    """JSON strings written one after the other (``_Item.literal``) as one."""
    if not pieces:
        return b'""'
    return bytes(pieces[:-1]).replace(b'""', b"") + b'"'


class ResponseEvents:
    def __init__(self, shell: JSONDict):
        self._shell = shell
        self._sequence = 0
        self._items: list[_Item] = []
        self._reasoning: _Item | None = None
        self._message: _Item | None = None
        self._calls: dict[int, _Item] = {}  # by the chunk's tool-call index
        # Namespaced tools' flat names and the built-in tools offered, read
        # from the shell at the first call.
        self._names: dict[str, tuple[str, str]] | None = None
        self._builtins: frozenset[str] = frozenset()
        # Web searches an Anthropic upstream is running, by its call's id.
        self._searches: dict[str, tuple[_Item, JSONDict]] = {}
        self._finish_reason: str | None = None
        self._usage: JSONDict | None = None
        self._model: str | None = None
        self._tier: Any = None  # the service tier the upstream reported
        self._repeats = RepeatedChunks(_READ)
        # The open message while nothing else is: a repeated text chunk's
        # delta needs nothing but its template.
        self._steady: _Item | None = None
        # The chat content's characters in the messages closed so far: a
        # chat annotation's span counts from the start of the whole content.
        self._said = 0
        self.response: JSONDict | None = None
        self.response_json = b""  # ``response`` as the last event has it

    def start(self) -> bytes:
        done = self._shell["output"]  # items made before the model answers (a compaction)
        if not done:
            shell = b',"response":' + orjson.dumps(self._shell) + b"}"
            return self._frame("response.created", shell) + self._frame(
                "response.in_progress", shell
            )
        shell = b',"response":' + orjson.dumps({**self._shell, "output": []}) + b"}"
        out = self._frame("response.created", shell) + self._frame("response.in_progress", shell)
        for index, item in enumerate(done):
            out += self._event("response.output_item.added", output_index=index, item=item)
            out += self._event("response.output_item.done", output_index=index, item=item)
        return out

    def feed(self, raw: bytes) -> bytes:
        """The events for one chat chunk (often one, sometimes none)."""
        literal = self._repeats.match(raw)
        if literal is not None:
            item = self._steady
            if item is not None and self._repeats.field == "content":
                item.pieces += literal  # the next piece of the text: the most frequent event
                sequence = self._sequence
                self._sequence = sequence + 1
                return item.delta % (sequence, literal)
            if self._repeats.field != "content":
                return self._reasoning_delta(literal)
            return self._text_delta(literal)
        try:
            chunk = orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError("upstream sent a stream chunk that is not JSON") from None
        if not isinstance(chunk, dict):
            raise UpstreamProtocolError("upstream sent a stream chunk that is not an object")
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        if chunk.get("model"):
            self._model = chunk["model"]
        if chunk.get("service_tier"):
            self._tier = chunk["service_tier"]
        out = b""
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # Responses has one answer; n is not a Responses parameter
            delta = choice.get("delta") or {}
            reasoning = reasoning_text(delta)
            if reasoning is not None:
                out += self._reasoning_delta(orjson.dumps(reasoning))
            if delta.get("thinking_blocks"):
                out += self._thinking(delta["thinking_blocks"])
            if delta.get(ANTHROPIC_BLOCK):
                out += self._server_block(delta[ANTHROPIC_BLOCK])
            if delta.get("content"):
                logprobs = token_logprobs(choice) if choice.get("logprobs") else None
                out += self._text_delta(orjson.dumps(delta["content"]), logprobs)
            if delta.get("refusal"):
                out += self._refusal_delta(orjson.dumps(delta["refusal"]))
            if delta.get("annotations"):
                out += self._annotated(delta["annotations"])
            for piece in delta.get("tool_calls") or ():
                out += self._call_piece(piece)
            if choice.get("finish_reason"):
                self._finish_reason = choice["finish_reason"]
        self._repeats.learn(raw, chunk)
        return out

    def finish(self, reported: JSONDict | None = None) -> bytes:
        """Close what is open; the last event carries the whole Response.
        ``reported``: the answer's usage, where no chunk carried it (the
        edge asks for none: the pipeline's record has it)."""
        out = self._close_reasoning() + self._close_message()
        for call in sorted(self._calls.values(), key=lambda c: c.index):
            out += self._close_call(call)
        for search, started in self._searches.values():  # a search whose result never came
            out += self._search_done(search, search_call(search.id, started, "incomplete"))
        if not self._items:  # an empty answer is still one (empty) message
            out = self._text_delta(b'""') + self._close_message()
        output = [item.done for item in self._items if item.done is not None]
        counted = self._usage if self._usage is not None else reported
        self.response = finished(
            self._shell, output, self._finish_reason, counted, self._model, self._tier
        )
        kind = (
            "response.completed"
            if self.response["status"] == "completed"
            else "response.incomplete"
        )
        self.response_json = orjson.dumps(self.response)
        return out + self._frame(kind, b',"response":' + self.response_json + b"}")

    def finish_unanswered(self, usage: JSONDict | None) -> bytes:
        """The last event of a Response whose output was all made before the
        model would answer (a ``compaction_trigger``'s compaction): no
        message of its own; ``usage``: what making it cost."""
        self.response = finished(self._shell, [], "stop", usage)
        self.response_json = orjson.dumps(self.response)
        return self._frame("response.completed", b',"response":' + self.response_json + b"}")

    def error(self, code: str | None, message: str, param: str | None = None) -> bytes:
        return self._event("error", code=code, message=message, param=param)

    # -- items -------------------------------------------------------------

    def _open(self, kind: str, prefix: str, **fields: Any) -> tuple[_Item, bytes]:
        item = self._new(kind, prefix, **fields)
        added = self._event(
            "response.output_item.added", output_index=item.index, item=self._snapshot(item)
        )
        return item, added

    def _new(self, kind: str, prefix: str, **fields: Any) -> _Item:
        index = len(self._shell["output"]) + len(self._items)
        item = _Item(kind, item_id(prefix, self._shell["id"], index), index, **fields)
        item.ref = b',"item_id":%b,"output_index":%d' % (orjson.dumps(item.id), item.index)
        item.delta = _delta_template(kind, item.ref)
        self._items.append(item)
        return item

    def _snapshot(self, item: _Item, status: str = "in_progress") -> JSONDict:
        if item.kind == "message":
            parts = [output_text(item.text())] if status != "in_progress" else []
            return message_item(item.id, parts, status)
        if item.kind == "function_call":
            called = function_call_item(item.id, item.call_id, item.name, item.text(), status)
        elif item.kind == "custom_tool_call":
            called = custom_tool_call_item(item.id, item.call_id, item.name, item.text(), status)
        elif item.kind == "reasoning":
            return reasoning_item(item.id, item.text(), item.blocks or None)
        elif status == "in_progress":  # a built-in tool's call, its action not yet known
            return opened_item(item.name, item.id, item.call_id)
        else:
            return builtin_call(item.name, item.id, item.call_id, item.text(), status)
        if item.namespace is not None:
            called["namespace"] = item.namespace
        return called

    def _reasoning_delta(self, literal: bytes) -> bytes:
        """``literal``: the piece of reasoning, a JSON string."""
        out = self._close_message()
        item = self._reasoning
        if item is None:
            item, opened = self._open("reasoning", "rs")
            self._reasoning = item
            part = {"type": "summary_text", "text": ""}
            out += opened + self._at(
                item, "response.reasoning_summary_part.added", summary_index=0, part=part
            )
        item.pieces += literal
        return out + self._delta(item, literal)

    def _thinking(self, blocks: list[JSONDict]) -> bytes:
        out = b""
        if self._reasoning is None:  # signed thinking without readable text (redacted)
            self._reasoning, out = self._open("reasoning", "rs")
            self._steady = None
        self._reasoning.blocks += blocks
        return out

    def _close_reasoning(self) -> bytes:
        item, self._reasoning = self._reasoning, None
        if item is None:
            return b""
        out = b""
        text = item.text()
        if text:
            part = {"type": "summary_text", "text": text}
            out = self._at(
                item, "response.reasoning_summary_text.done", summary_index=0, text=text
            ) + self._at(item, "response.reasoning_summary_part.done", summary_index=0, part=part)
        return out + self._item_done(item, "completed")

    def _text_delta(self, literal: bytes, logprobs: list[JSONDict] | None = None) -> bytes:
        """``literal``: the piece of text, a JSON string; ``logprobs``: its
        tokens' entries, where the request asked for them."""
        item = self._message
        out = self._close_reasoning()
        if item is not None and not item.texted:  # text after a refusal: a message of its own
            out += self._close_message()
            item = None
        if item is None:
            item, opened = self._open_message(texted=True)
            part = b',"content_index":0,"part":' + _EMPTY_PART + b"}"
            out += opened + self._frame("response.content_part.added", item.ref + part)
        self._steady = item  # nothing else is open now
        if literal == b'""':
            return out
        item.pieces += literal
        if logprobs:
            return out + self._delta_with_logprobs(item, literal, logprobs)
        return out + self._delta(item, literal)

    def _open_message(self, texted: bool) -> tuple[_Item, bytes]:
        """A new message item, and its output_item.added event; ``texted``:
        whether its first part is text (else a refusal)."""
        item = self._message = self._new("message", "msg")
        item.start, item.texted = self._said, texted
        added = _MESSAGE_EVENT % (item.index, orjson.dumps(item.id), b'"in_progress"', b"[]")
        return item, self._frame("response.output_item.added", added)

    def _delta_with_logprobs(self, item: _Item, literal: bytes, logprobs: list[JSONDict]) -> bytes:
        if item.logprobs is None:
            item.logprobs = []
        item.logprobs += logprobs
        if not item.delta_logprobs:
            item.delta_logprobs = _delta_template("message+logprobs", item.ref)
        sequence = self._sequence
        self._sequence = sequence + 1
        return item.delta_logprobs % (sequence, literal, orjson.dumps(logprobs))

    def _close_message(self) -> bytes:
        item, self._message = self._message, None
        self._steady = None
        if item is None:
            return b""
        status, _ = status_of(self._finish_reason)
        out = b""
        parts: list[JSONDict] = []
        written = b""  # the parts as output_item.done has them
        if item.texted:
            text = item.literal()
            said = orjson.loads(text)
            self._said = item.start + len(said)
            logprobs = orjson.dumps(item.logprobs) if item.logprobs else b"[]"
            annotations = orjson.dumps(item.annotations) if item.annotations else b"[]"
            done = b',"content_index":0,"text":' + text + b',"logprobs":' + logprobs + b"}"
            parts.append(output_text(said, item.logprobs, item.annotations))
            written = _PART % (text, annotations, logprobs)
            out = self._frame("response.output_text.done", item.ref + done) + self._frame(
                "response.content_part.done",
                item.ref + _DONE_PART % (text, annotations, logprobs),
            )
        if item.refusal is not None:
            refused = _joined(item.refusal)
            index = b',"content_index":%d' % item.refusal_index
            part = b'{"type":"refusal","refusal":' + refused + b"}"
            parts.append({"type": "refusal", "refusal": orjson.loads(refused)})
            written += (b"," if written else b"") + part
            out += self._frame(
                "response.refusal.done", item.ref + index + b',"refusal":' + refused + b"}"
            ) + self._frame(
                "response.content_part.done", item.ref + index + b',"part":' + part + b"}"
            )
        item.done = message_item(item.id, parts, status)
        closed = _MESSAGE_EVENT % (
            item.index,
            orjson.dumps(item.id),
            orjson.dumps(status),
            b"[" + written + b"]",
        )
        return out + self._frame("response.output_item.done", closed)

    def _refusal_delta(self, literal: bytes) -> bytes:
        """``literal``: a piece of the model's refusal (chat's ``delta.refusal``),
        a JSON string: a part of the open message after its text, or a
        message of its own."""
        out = self._close_reasoning()
        item = self._message
        if item is None:
            item, opened = self._open_message(texted=False)
            out += opened
        self._steady = None  # a repeated text chunk is no longer only the next piece of text
        if item.refusal is None:
            item.refusal = bytearray()
            item.refusal_index = 1 if item.texted else 0
            out += self._frame(
                "response.content_part.added",
                item.ref
                + b',"content_index":%d,"part":{"type":"refusal","refusal":""}}'
                % item.refusal_index,
            )
        item.refusal += literal
        return out + self._frame(
            "response.refusal.delta",
            item.ref + b',"content_index":%d,"delta":%b}' % (item.refusal_index, literal),
        )

    def _annotated(self, annotations: Any) -> bytes:
        """Chat's ``url_citation`` annotations (an Anthropic upstream's, as a
        cited block ends) on the open message's text."""
        item = self._message
        if item is None:
            return b""
        said = item.start + len(item.text())
        out = b""
        for annotation in cited(annotations, item.start, said):
            index = len(item.annotations)
            item.annotations.append(annotation)
            out += self._at(
                item,
                "response.output_text.annotation.added",
                content_index=0,
                annotation_index=index,
                annotation=annotation,
            )
        return out

    def _server_block(self, block: Any) -> bytes:
        """An Anthropic upstream's server tool block: its web search's call
        and result as a ``web_search_call`` item (``web_search.py``)."""
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "server_tool_use" and block.get("name") == "web_search":
            out = self._close_reasoning() + self._close_message()
            item = self._new("web_search_call", "ws")
            self._searches[str(block.get("id"))] = (item, block)
            opened = search_call(item.id, block, "in_progress")
            return (
                out
                + self._event("response.output_item.added", output_index=item.index, item=opened)
                + self._frame("response.web_search_call.in_progress", item.ref + b"}")
                + self._frame("response.web_search_call.searching", item.ref + b"}")
            )
        if kind == "web_search_tool_result":
            found = self._searches.pop(str(block.get("tool_use_id")), None)
            if found is None:
                return b""
            item, call = found
            return self._search_done(
                item, with_result(search_call(item.id, call, "completed"), block)
            )
        return b""

    def _search_done(self, item: _Item, done: JSONDict) -> bytes:
        item.done = done
        out = b""
        if done["status"] != "incomplete":  # its result came (pages or a failure)
            out = self._frame("response.web_search_call.completed", item.ref + b"}")
        return out + self._event("response.output_item.done", output_index=item.index, item=done)

    def _call_piece(self, piece: JSONDict) -> bytes:
        """A piece of a function call (its arguments) or of a custom tool's
        call (its input)."""
        position = piece.get("index", 0)
        custom = piece.get("custom")
        is_custom = isinstance(custom, dict)
        function: JSONDict = custom if isinstance(custom, dict) else piece.get("function") or {}
        out = b""
        call = self._calls.get(position)
        if call is None:
            out = self._close_reasoning() + self._close_message()
            kind, prefix = ("custom_tool_call", "ctc") if is_custom else ("function_call", "fc")
            name = function.get("name") or ""
            if self._names is None:
                tools = self._shell.get("tools") or ()
                self._names, self._builtins = namespaced(tools), offered(tools)
            namespace, name = self._names.get(name, (None, name))
            if not is_custom and name in self._builtins:
                kind, prefix = CALL_ITEMS[name], id_prefix(name)
            call, opened = self._open(
                kind,
                prefix,
                call_id=piece.get("id") or new_id("call"),
                name=name,
                namespace=namespace,
            )
            self._calls[position] = call
            out += opened
        text = function.get("input" if call.kind == "custom_tool_call" else "arguments")
        if text:
            literal = orjson.dumps(text)
            call.pieces += literal
            if call.kind in _CALL_DELTAS:  # a built-in call's action comes whole, at its end
                out += self._delta(call, literal)
        return out

    def _close_call(self, call: _Item) -> bytes:
        if call.kind not in _CALL_DELTAS:  # a built-in tool's call
            return self._item_done(call, "completed")
        if call.kind == "custom_tool_call":
            done = self._at(call, "response.custom_tool_call_input.done", input=call.text())
        else:
            done = self._at(
                call,
                "response.function_call_arguments.done",
                name=call.name,
                arguments=call.text(),
            )
        return done + self._item_done(call, "completed")

    def _item_done(self, item: _Item, status: str) -> bytes:
        item.done = self._snapshot(item, status)
        return self._event("response.output_item.done", output_index=item.index, item=item.done)

    # -- events ------------------------------------------------------------

    def _delta(self, item: _Item, delta: bytes) -> bytes:
        """``delta``: the JSON string."""
        sequence = self._sequence
        self._sequence = sequence + 1
        return item.delta % (sequence, delta)

    def _at(self, item: _Item, kind: str, **fields: Any) -> bytes:
        return self._frame(kind, item.ref + b"," + orjson.dumps(fields)[1:])

    def _event(self, kind: str, **fields: Any) -> bytes:
        return self._frame(kind, b"," + orjson.dumps(fields)[1:])

    def _frame(self, kind: str, rest: bytes) -> bytes:
        """The event: ``rest`` is its data after the sequence number (``,"a":1}``)."""
        sequence = self._sequence
        self._sequence = sequence + 1
        name = kind.encode()
        return _FRAME % (name, name, sequence, rest)
