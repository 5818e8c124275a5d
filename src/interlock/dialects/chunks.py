"""Streamed chat chunks read without parsing them, where a stream repeats itself.

An upstream writes every chunk of a stream the same way: the same id,
model and framing around each piece of text. ``RepeatedChunks`` learns the
bytes around the text of a chunk that carried text and nothing else the
translator reads; a later chunk with the same bytes around a JSON string
that needs no escapes means what the learned one meant, with its own text.
The edges that translate chunks into another dialect's events (Anthropic,
Responses) take that text as it is, a JSON string, neither parsing the
chunk nor walking its objects; any other chunk is parsed.

A string that needs no escapes is written by orjson as it came, so events
built around it are the bytes they would be from the parsed text.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from interlock.chat_markers import REASONING_FIELDS

__all__ = ["RepeatedChunks"]

# The delta fields whose text a repeated chunk may carry.
_TEXT_FIELDS = ("content", *REASONING_FIELDS)

# A JSON string with no escapes (no quote, backslash or control character
# inside) and not empty: an empty text makes no event, so it is parsed.
_PLAIN_TEXT = re.compile(rb'"[^"\\\x00-\x1f]+"').fullmatch  # (raw, start, end)
# The head of a chunk before one is learned: no chunk starts with it.
_NOTHING_YET = b"\x00"


class RepeatedChunks:
    """One stream's repeated chunks: ``match`` each chunk first, ``learn``
    each one that had to be parsed. ``read``: the delta fields the
    translator makes events from."""

    __slots__ = ("_end", "_head", "_read", "_start", "_tail", "_tries", "field")

    def __init__(self, read: frozenset[str]):
        self._read = read
        self.field = ""  # the learned chunk's text field, once one is learned
        self._head = _NOTHING_YET
        self._tail = b""
        self._start = self._end = 0  # their lengths
        # Chunks that never repeat (one with a random field) stop the learning.
        self._tries = 4

    def match(self, raw: bytes) -> bytes | None:
        """The text of a chunk like the learned one, as its JSON string; else None."""
        # Every chunk of a stream comes here: the fewest steps for the usual one.
        if raw.startswith(self._head) and raw.endswith(self._tail):
            found = _PLAIN_TEXT(raw, self._start, len(raw) - self._end)
            if found is not None:
                literal = found[0]
                # What goes out in another dialect's events is UTF-8; a chunk
                # that is not is parsed, and refused as any that is not JSON.
                if literal.isascii() or _utf8(literal):
                    return literal
        return None

    def learn(self, raw: bytes, chunk: Any) -> bool:
        """Learn ``raw`` if it carries text in one field and nothing else
        (``chunk``: ``raw`` parsed, after the translator took it); whether
        it was learned."""
        if not self._tries or not isinstance(chunk, dict) or chunk.get("usage") is not None:
            return False
        choices = chunk.get("choices")
        if not isinstance(choices, list) or len(choices) != 1:
            return False
        choice = choices[0]
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            return False
        delta = choice.get("delta")
        if choice.get("finish_reason") or not isinstance(delta, dict) or "role" in delta:
            return False  # the first chunk names the role: it is not repeated
        if choice.get("logprobs"):
            return False  # each chunk's are its own: a match would drop them
        field = ""
        for name, value in delta.items():
            if value and name in self._read:
                if field:
                    return False
                field = name
        text = delta.get(field)
        if field not in _TEXT_FIELDS or not isinstance(text, str):
            return False
        self._tries -= 1
        literal = orjson.dumps(text)
        at = raw.find(literal)
        if at < 0 or raw.find(literal, at + 1) >= 0:
            return False  # written otherwise (escaped), or not only there
        head, tail = raw[:at], raw[at + len(literal) :]
        # That string is the text if the chunk with another there is the same but for it.
        delta[field] = ""
        try:
            same = bool(orjson.loads(head + b'""' + tail) == chunk)
        except orjson.JSONDecodeError:
            same = False
        finally:
            delta[field] = text
        if same:
            self.field, self._head, self._tail = field, head, tail
            self._start, self._end = len(head), len(tail)
        return same


def _utf8(literal: bytes) -> bool:
    try:
        literal.decode()
    except UnicodeDecodeError:
        return False
    return True
