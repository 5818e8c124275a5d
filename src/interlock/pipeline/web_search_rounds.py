"""The rounds of a web search the gateway runs (``web_search.py``), read
and added up: ``RoundReader`` reads one round's chunks (its text passed on,
its searches held, client calls re-indexed across rounds), ``StitchedStream``
writes the rounds as one answer's chunks, and ``RoundTotals`` adds up the
rounds' tokens, cost and routing attempts on the request's record."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from interlock.chat_markers import ANTHROPIC_TEXT
from interlock.ids import random_hex
from interlock.pipeline.request import JSONDict
from interlock.telemetry.record import RequestRecord

__all__ = ["RoundReader", "RoundTotals", "StitchedStream"]


class StitchedStream:
    """The rounds' chunks as one answer's: the first round's id, the role
    written once, client tool calls numbered across rounds, and the chunks
    of its own (a search's blocks, the finish, the usage added up)."""

    __slots__ = ("calls", "frame", "roled", "searched")

    def __init__(self) -> None:
        self.frame: JSONDict = {}
        self.calls = 0  # client tool calls passed on, across rounds
        self.searched = False  # a search's blocks went out: the next text opens a block
        self.roled = False  # the role went out: a later round's is not repeated

    def follow(self, chunk: JSONDict) -> None:
        """The answer's chunks keep the first round's id; the latest model."""
        if not self.frame:
            self.frame = {"id": chunk.get("id") or "chatcmpl-" + random_hex(24)}
            self.frame["object"] = "chat.completion.chunk"
        for key in ("created", "model", "system_fingerprint"):
            if chunk.get(key) is not None:
                self.frame[key] = chunk[key]

    def chunk(self, delta: JSONDict, finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return orjson.dumps({**self.frame, "choices": [choice]})

    def passed(self, delta: JSONDict, choice: JSONDict) -> bytes:
        """An upstream chunk's ``choice`` with what goes on of its ``delta``;
        its finish reason is held (a search may follow)."""
        passed = {**choice, "delta": delta, "finish_reason": None}
        return orjson.dumps({**self.frame, "choices": [passed]})

    def usage_chunk(self, chunk: JSONDict, usage: JSONDict) -> bytes:
        return orjson.dumps({**chunk, **self.frame, "usage": usage})


class RoundReader:
    """One round's stream, read chunk by chunk: its text, searches and
    client calls, and what it passes on."""

    def __init__(self, tool_name: str) -> None:
        self._tool = tool_name  # the search's function: its calls are held
        self.text = ""
        self.finish_reason: str | None = None
        self.usage_chunk: JSONDict | None = None
        self.client_calls = False
        self._kinds: dict[int, int | None] = {}  # upstream index -> client index (None: a search)
        self._searches: dict[int, JSONDict] = {}
        self._spoke = False

    def searches(self) -> list[JSONDict]:
        return [self._searches[i] for i in sorted(self._searches)]

    def read(self, raw: bytes, stream: StitchedStream) -> list[bytes]:
        chunk = orjson.loads(raw)
        if not isinstance(chunk, dict):
            return [raw]
        stream.follow(chunk)
        choices = chunk.get("choices")
        if not choices:
            if chunk.get("usage") is not None:
                self.usage_chunk = chunk  # held: the answer's, all rounds added, goes last
                return []
            return [raw]
        out: list[bytes] = []
        for choice in choices:
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            delta = dict(delta) if isinstance(delta, dict) else {}
            if stream.roled:
                delta.pop("role", None)
            elif "role" in delta:
                stream.roled = True
            pieces = delta.pop("tool_calls", None) or ()
            passed = [p for p in (self._piece(p, stream) for p in pieces) if p is not None]
            if passed:
                delta["tool_calls"] = passed
            content = delta.get("content")
            if isinstance(content, str) and content:
                self.text += content
                if stream.searched and not self._spoke:
                    out.append(stream.chunk({ANTHROPIC_TEXT: True}))
                self._spoke = True
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]  # held: a search may follow
            if any(v not in (None, "", [], {}) for v in delta.values()) or choice.get("logprobs"):
                rest = {k: v for k, v in choice.items() if k != "finish_reason"}
                out.append(stream.passed(delta, rest))
        return out

    def _piece(self, piece: Any, stream: StitchedStream) -> JSONDict | None:
        """A tool-call piece as passed on (a client call's, re-indexed), or
        None (a search's: held)."""
        if not isinstance(piece, dict):
            return None
        index = piece.get("index", 0)
        function = piece.get("function")
        if not isinstance(function, dict):
            function = {}
        if index not in self._kinds:
            if function.get("name") == self._tool:
                self._kinds[index] = None
                self._searches[index] = {
                    "id": piece.get("id"),
                    "function": {"name": self._tool, "arguments": ""},
                }
            else:
                self._kinds[index] = stream.calls
                stream.calls += 1
                self.client_calls = True
        client = self._kinds[index]
        if client is None:
            self._searches[index]["function"]["arguments"] += str(function.get("arguments") or "")
            return None
        return {**piece, "index": client}


class RoundTotals:
    """The rounds' tokens and cost, added up as each round ends, and their
    attempts: routing counts a call's attempts on the record (``max_attempts``,
    the retry budget), so each round starts the count afresh and the record
    gets the sum back when the answer ends (``settle``)."""

    __slots__ = ("attempts", "cost", "input", "output", "priced", "rounds", "usage")

    def __init__(self) -> None:
        self.input = self.output = self.rounds = self.attempts = 0
        self.cost = 0.0
        self.priced = True
        self.usage: JSONDict | None = None

    def add(self, record: RequestRecord) -> None:
        self.rounds += 1
        self.attempts += record.attempts
        record.attempts = 0
        self.input += record.input_tokens or 0
        self.output += record.output_tokens or 0
        if record.cost_usd is None and (record.input_tokens or record.output_tokens):
            self.priced = False
        self.cost += record.cost_usd or 0.0
        if record.usage is not None:
            self.usage = _added(self.usage, record.usage)

    def settle(self, record: RequestRecord) -> None:
        """The record's attempts: every round's, however the answer ended."""
        record.attempts += self.attempts
        self.attempts = 0

    def put(self, record: RequestRecord, searches: int) -> JSONDict | None:
        """Set ``record`` to the totals; the answer's usage object."""
        if self.rounds > 1:
            record.input_tokens, record.output_tokens = self.input, self.output
            record.cost_usd = self.cost if self.priced else None
            record.unpriced = not self.priced
        usage = self.usage
        if usage is not None and searches:
            usage = {**usage, "server_tool_use": {"web_search_requests": searches}}
        if usage is not None:
            record.usage = usage
        return usage


def _added(total: JSONDict | None, usage: Mapping[str, Any]) -> JSONDict:
    """Two usage objects as one: counts added, nested details too."""
    if total is None:
        return dict(usage)
    out = dict(total)
    for key, value in usage.items():
        before = out.get(key)
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and isinstance(before, int | float):
            out[key] = before + value
        elif isinstance(value, dict) and isinstance(before, dict):
            out[key] = _added(before, value)
        elif before is None:
            out[key] = value
    return out
