"""A text filter for the string values inside streamed JSON (tool-call arguments).

A model streams a tool call's ``arguments`` as pieces of JSON text.
``JsonStringsFilter`` reads those pieces with a small incremental lexer:
the JSON's structure and its object keys pass through as written; the text
of each string *value* is decoded (escapes resolved, a surrogate pair
joined), run through a filter of its own (``TextFilter``: redaction,
pseudonym restoration), and written back JSON-escaped. So a replacement
never cuts an escape in half, and a restored value with a newline or a
quote in it stays valid JSON. What the inner filter holds back (a value
that may still be arriving) waits with it; the closing quote flushes it.

From the first character that cannot be JSON on, the text passes as it
came: a model's broken call is not made worse, only not filtered further.

Written by hand: incremental JSON parsers (ijson and the like) hand over a
string only once it is complete and do not give back the text around it,
so a long value would wait whole and the pieces could not pass as written.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson

from interlock.guardrails.stream import TextFilter

__all__ = ["JsonStringsFilter"]

_SIMPLE_ESCAPES = {
    '"': '"',
    "\\": "\\",
    "/": "/",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
}
_HEX = frozenset("0123456789abcdefABCDEF")
# What each open container expects next: an object's key, an object's
# value (after its ":"), or an array's value.
_KEY, _VALUE, _ITEM = "key", "value", "item"


class JsonStringsFilter:
    """``make_filter``: a fresh ``TextFilter`` for each string value."""

    def __init__(self, make_filter: Callable[[], TextFilter]):
        self._make_filter = make_filter
        self._open: list[str] = []  # per open container: _KEY, _VALUE or _ITEM
        self._in_string = False
        self._inner: TextFilter | None = None  # the open value string's filter
        self._escape = ""  # an escape sequence not yet complete, from its backslash
        self._high = ""  # a high surrogate's escape, waiting for its low half
        self._broken = False

    def feed(self, delta: str) -> str:
        if self._broken:
            return delta
        out: list[str] = []
        text: list[str] = []  # the open value string's decoded text, not yet filtered
        for position, char in enumerate(delta):
            taken = (
                self._string_char(char, out, text)
                if self._in_string
                else self._structure_char(char, out)
            )
            if not taken:
                self._broken = True
                self._flush_text(out, text)
                return "".join(out) + self.flush() + delta[position:]
        self._flush_text(out, text)
        return "".join(out)

    def flush(self) -> str:
        """What is held (an unfinished string's filtered text, an unfinished
        escape as written); nothing once the JSON ended."""
        out = ""
        if self._inner is not None:
            out = _escaped(self._inner.flush())
            self._inner = None
        out += self._high + self._escape
        self._high = self._escape = ""
        return out

    # -- outside strings ---------------------------------------------------

    def _structure_char(self, char: str, out: list[str]) -> bool:
        opened = self._open
        if char == '"':
            self._in_string = True
            self._inner = None if opened and opened[-1] == _KEY else self._make_filter()
        elif char == "{":
            opened.append(_KEY)
        elif char == "[":
            opened.append(_ITEM)
        elif char in "}]":
            if not opened or (opened[-1] == _ITEM) != (char == "]"):
                return False
            opened.pop()
        elif char == ":":
            if not opened or opened[-1] != _KEY:
                return False
            opened[-1] = _VALUE
        elif char == "," and opened and opened[-1] == _VALUE:
            opened[-1] = _KEY
        out.append(char)
        return True

    # -- inside a string ---------------------------------------------------

    def _string_char(self, char: str, out: list[str], text: list[str]) -> bool:
        if self._escape:
            self._escape += char
            if self._escape_char(text, out):
                return True
            self._escape = self._escape[:-1]  # not taken: it goes out as it came
            return False
        if self._high and char != "\\":
            return False  # a high surrogate alone
        if char == "\\":
            self._escape = char
        elif char == '"':
            self._in_string = False
            inner, self._inner = self._inner, None
            if inner is not None:
                self._flush_text(out, text, inner)
                out.append(_escaped(inner.flush()))
            out.append(char)
        elif ord(char) < 0x20:
            return False  # a raw control character is not JSON
        elif self._inner is None:
            out.append(char)  # a key: as written
        else:
            text.append(char)
        return True

    def _escape_char(self, text: list[str], out: list[str]) -> bool:
        escape = self._escape
        if escape[1] != "u":
            decoded = _SIMPLE_ESCAPES.get(escape[1])
            if decoded is None or self._high:
                return False
            self._escape = ""
            self._decoded(escape, decoded, text, out)
            return True
        if len(escape) > 2 and escape[-1] not in _HEX:
            return False
        if len(escape) < 6:
            return True
        code = int(escape[2:], 16)
        is_high, is_low = 0xD800 <= code < 0xDC00, 0xDC00 <= code < 0xE000
        if bool(self._high) != is_low:
            return False  # half a surrogate pair
        self._escape = ""
        if is_high:
            self._high = escape
            return True
        if is_low:
            pair, self._high = self._high + escape, ""
            self._decoded(pair, orjson.loads(f'"{pair}"'), text, out)
        else:
            self._decoded(escape, chr(code), text, out)
        return True

    def _decoded(self, raw: str, char: str, text: list[str], out: list[str]) -> None:
        if self._inner is None:
            out.append(raw)  # a key's escape: as written
        else:
            text.append(char)

    def _flush_text(self, out: list[str], text: list[str], inner: TextFilter | None = None) -> None:
        """The decoded text so far through the open value's filter, escaped."""
        inner = inner or self._inner
        if text and inner is not None:
            out.append(_escaped(inner.feed("".join(text))))
        text.clear()


def _escaped(text: str) -> str:
    """``text`` as it goes between a JSON string's quotes."""
    return orjson.dumps(text).decode()[1:-1] if text else ""
