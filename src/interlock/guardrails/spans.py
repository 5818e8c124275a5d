"""Spans: where a detector found a value, and how overlapping finds are settled.

A ``Span`` names a place and a type, never the value: it is safe to log,
count and put in a decision. Detectors are small pure objects (text in,
spans out) that also describe, for stream redaction, which text at the end
of a buffer could still grow into one of their values (``tail``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "PRIORITY",
    "Continuation",
    "Detector",
    "OpenEnded",
    "Replacer",
    "Span",
    "label_replacer",
    "matches_at_boundary",
    "prefix_pattern",
    "replace_spans",
    "resolve",
]


@dataclass(frozen=True, slots=True)
class Span:
    """``text[start:end]`` is a value of ``type``; ``label`` is a value-free sub-kind."""

    start: int
    end: int
    type: str
    label: str = ""


class Detector(Protocol):
    """Finds values of one PII type."""

    # The type label: "EMAIL", "PHONE", ...
    type: str
    # Literal substrings one of which any text holding a value contains ("@"):
    # the cheapest test, a substring search each. () when there are none.
    hints: tuple[str, ...]
    # Regex sources each of which any text holding a value contains, the cheap
    # and shared first (a digit, then the shape of the value's start): the
    # scanner skips the detector when one is absent. () to always run.
    trigger: tuple[str, ...]
    # A regex source that matches, anchored at the end of a text, a suffix that
    # could still become (or extend) a value once more text arrives. A stream
    # holds that suffix back. "" when nothing needs holding.
    tail: str
    # A regex source present in any text whose ``tail`` match contains blanks
    # ("+44 20 79", "DE89 3704"); "" when the tail never contains any. Lets a
    # stream look for the tail in the last word only.
    blank_tail: str

    def find(self, text: str, start: int = 0) -> list[Span]:
        """Every value in ``text`` starting at or after ``start``, left to right (they may
        overlap other detectors'). Text before ``start`` is context only: look-behinds
        see it, no value starts in it."""
        ...


class Continuation(Protocol):
    """Consumes the rest of an open-ended value a stream has already replaced."""

    def consume(self, text: str) -> tuple[int, bool]:
        """How many leading characters of ``text`` still belong to the value, and
        whether the value ended inside ``text``."""
        ...


@runtime_checkable
class OpenEnded(Protocol):
    """A detector whose values may be longer than any stream hold (keys, PEM blocks).

    Such a value is recognisable from a bounded prefix; a stream replaces it as
    soon as the prefix is seen and then drops what follows until it ends.
    """

    def continuation(self, span: Span, text: str) -> Continuation | None:
        """For a span that reaches the end of ``text``: how to swallow the rest,
        or ``None`` when the value is already complete."""
        ...


# Settles overlaps between detectors: at the same start, higher wins; then longer.
PRIORITY = {"SECRET": 3, "CARD": 2, "IBAN": 2, "US_SSN": 2, "EMAIL": 2}

Replacer = Callable[[Span, str], str]


def label_replacer(span: Span, value: str) -> str:
    """``[EMAIL]``, ``[CARD]``, ...: the value never survives."""
    return f"[{span.type}]"


def resolve(spans: Iterable[Span]) -> list[Span]:
    """Non-overlapping spans, left to right: the leftmost value wins an overlap,
    ties go to the higher-priority type, then to the longer span."""
    ordered = sorted(spans, key=lambda s: (s.start, -PRIORITY.get(s.type, 1), s.start - s.end))
    kept: list[Span] = []
    end = -1
    for span in ordered:
        if span.start >= end:
            kept.append(span)
            end = span.end
    return kept


def replace_spans(text: str, spans: Iterable[Span], replace: Replacer) -> str:
    """``text`` with each (resolved, ordered) span swapped for its replacement."""
    parts: list[str] = []
    last = 0
    for span in spans:
        parts.append(text[last : span.start])
        parts.append(replace(span, text[span.start : span.end]))
        last = span.end
    parts.append(text[last:])
    return "".join(parts)


def prefix_pattern(literal: str) -> str:
    """A regex source matching any non-empty prefix of ``literal``.

    ``prefix_pattern("abc")`` matches ``a``, ``ab`` and ``abc``: what a stream
    must hold when a marker may be arriving a few characters at a time.
    """
    escaped = [re.escape(char) for char in literal]
    source = ""
    for char in reversed(escaped[1:]):
        source = f"(?:{char}{source})?"
    return escaped[0] + source


def matches_at_boundary(
    pattern: re.Pattern[str], text: str, start: int, not_after: str
) -> Iterator[re.Match[str]]:
    """``pattern.finditer(text, start)`` for matches not preceded by a word character
    or one of ``not_after``: a leading look-behind, checked by hand.

    Same matches as a ``(?<![\\w...])`` prefix would give, but a pattern that
    starts with a plain character class lets ``re`` skip ahead quickly, which
    makes the scan several times cheaper on long texts.
    """
    pos = start
    while True:
        match = pattern.search(text, pos)
        if match is None:
            return
        begin = match.start()
        before = text[begin - 1] if begin else ""
        if before and (before.isalnum() or before == "_" or before in not_after):
            pos = begin + 1  # what the look-behind would do: try the next start
            continue
        yield match
        pos = match.end() if match.end() > begin else begin + 1
