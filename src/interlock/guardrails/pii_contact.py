"""Contact details: e-mail addresses and phone numbers.

Phones are matched in two shapes only, each with digit-count checks:
international (``+CC`` then 8-15 digits in all, in groups) and North
American (``(415) 555-2671``, ``415-555-2671``, ``415.555.2671``, with a
valid area code and exchange and one consistent separator). Bare digit runs,
dates, versions and numbers introduced as order/invoice/ticket numbers are
left alone: without a ``+`` or the NANP shape a number is too ambiguous.
"""

from __future__ import annotations

import re

from interlock.guardrails.spans import Span, matches_at_boundary, resolve

__all__ = ["EmailDetector", "PhoneDetector"]

_EMAIL = re.compile(
    r"(?<![\w.%+-])"
    r"[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.){1,6}[A-Za-z]{2,24}"
    r"(?![\w-])"
)

_DOMAIN_MAX = 6 * 64 + 24 + 2  # six labels, a TLD, the look-ahead's character
_INTERNATIONAL = re.compile(r"\+[1-9]\d{0,2}(?:[ .-]?(?:\(\d{1,4}\)|\d++)){1,7}+(?![\w-]|[.-]\d)")
# The area code onwards; an optional "+1 " before it is looked for by hand, so
# the pattern starts with a character class and ``re`` can skip ahead fast.
_NANP = re.compile(
    r"(?:\((?P<pa>[2-9]\d\d)\)[ .-]?(?P<pe>[2-9]\d\d)[ .-]"
    r"|(?P<a>[2-9]\d\d)(?P<sep>[ .-])(?P<e>[2-9]\d\d)(?P=sep))"
    r"\d{4}(?![\w-]|[.-]\d)"
)
_NANP_PREFIXES = ("+1 ", "+1.", "+1-", "+1", "1 ", "1.", "1-", "1")
# Words that introduce a number that is not a phone, just before it.
_NOT_A_PHONE = re.compile(
    r"(?:order|invoice|ticket|ref|reference|tracking|case|serial|sku|part|po|"
    r"confirmation|account|acct)\s*(?:no\.?|number|num|id)?\s*[:#]?\s*$|#\s*$",
    re.IGNORECASE,
)


class EmailDetector:
    """``name@example.com``: a plausible local part, labelled domain and alphabetic TLD."""

    type = "EMAIL"
    hints: tuple[str, ...] = ("@",)
    trigger: tuple[str, ...] = ()
    tail = r"[A-Za-z0-9._%+-]+(?:@[A-Za-z0-9.-]*)?\Z"
    blank_tail = ""

    def find(self, text: str, start: int = 0) -> list[Span]:
        # Scan only around each "@": a local part is at most 64 characters and a
        # domain at most _DOMAIN_MAX, so nothing further away can be part of one.
        found: dict[tuple[int, int], None] = {}
        at = text.find("@", start)
        while at != -1:
            window = _EMAIL.finditer(text, max(start, at - 64), at + _DOMAIN_MAX)
            found.update(dict.fromkeys(m.span() for m in window))
            at = text.find("@", at + 1)
        return [Span(begin, end, self.type) for begin, end in sorted(found)]


class PhoneDetector:
    """International ``+CC`` numbers and North American numbers."""

    type = "PHONE"
    hints: tuple[str, ...] = ()
    # "+" and a country code, or the "555-2671" that ends both North American shapes.
    trigger: tuple[str, ...] = (r"\d", r"\+[1-9]|\d\d\d[ .-]\d{4}")
    tail = r"[+(]?\d[\d ().+-]*\Z|[+(]\Z"
    blank_tail = r"\d"

    def find(self, text: str, start: int = 0) -> list[Span]:
        spans: list[Span] = []
        for m in matches_at_boundary(_INTERNATIONAL, text, start, "+"):
            digits = sum(ch.isdigit() for ch in m.group())
            trunk = "(0)" in m.group()  # "+44 (0)20 ...": the 0 is not dialled
            if 8 <= digits - trunk <= 15 and not _introduced_as_other(text, m.start()):
                spans.append(Span(m.start(), m.end(), self.type, "international"))
        for m in _NANP.finditer(text, start):
            area = m.group("pa") or m.group("a")
            exchange = m.group("pe") or m.group("e")
            if area[1:] == "11" or exchange[1:] == "11":  # N11: service codes, not numbers
                continue
            begin = _nanp_start(text, m.start(), start)
            if begin is not None and not _introduced_as_other(text, begin):
                spans.append(Span(begin, m.end(), self.type, "nanp"))
        return resolve(spans)  # "+1 415 555 2671" is both shapes


def _nanp_start(text: str, core: int, start: int) -> int | None:
    """Where a number whose area code is at ``core`` starts: before a "+1 " country
    prefix if there is one, and never right after a word character, "+", "." or "-"."""
    for prefix in _NANP_PREFIXES:
        begin = core - len(prefix)
        if begin >= start and text.startswith(prefix, begin) and _clear_before(text, begin):
            return begin
    return core if _clear_before(text, core) else None


def _clear_before(text: str, index: int) -> bool:
    before = text[index - 1] if index else " "
    return not (before.isalnum() or before in "_+.-")


def _introduced_as_other(text: str, start: int) -> bool:
    return _NOT_A_PHONE.search(text, max(0, start - 32), start) is not None
