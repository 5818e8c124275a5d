"""Stream-safe output filters: redaction and placeholder restoration.

Both take text deltas as they arrive and return what may be sent now. They
hold back only a suffix that could still become (part of) a value: the
partial word or number at the end, or an unfinished ``[EMAIL_1`` - at most
``max_hold`` characters - and send everything else at once, so a delta that
ends in whitespace or punctuation costs no delay at all. ``flush()`` at the
end of the stream returns the rest.

Guarantee: for values no longer than ``max_hold`` (every bounded type) and
for open-ended ones (keys, JWTs, PEM blocks, replaced once their prefix is
seen), the concatenated output equals ``PiiScanner.redact`` of the whole
text, however the text was split. A value straddling the hold's edge is held
whole, so in rare cases slightly more than ``max_hold`` characters wait.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from typing import Protocol

from interlock.guardrails.pseudonyms import PLACEHOLDER_TAIL, PseudonymVault
from interlock.guardrails.scanner import PiiScanner
from interlock.guardrails.spans import Continuation, Span, replace_spans, resolve

__all__ = ["ChainedFilter", "StreamRedactor", "StreamRestorer", "TextFilter"]

# Raw text kept from before the cut, so look-behinds and "order #" context see
# what a one-shot scan would.
_CONTEXT = 64
_TAIL_LOOKBACK = 32
_PLACEHOLDER_TAIL = re.compile(PLACEHOLDER_TAIL)


class TextFilter(Protocol):
    """Rewrites a stream of text deltas; one instance per stream (per choice)."""

    def feed(self, delta: str) -> str:
        """Text that may be sent now (possibly empty)."""
        ...

    def flush(self) -> str:
        """The held rest, at the end of the stream."""
        ...


class StreamRedactor:
    """Redacts PII from streamed text with a small bounded look-ahead."""

    def __init__(
        self,
        scanner: PiiScanner,
        *,
        max_hold: int = 128,
        label: Callable[[Span], str] = lambda span: f"[{span.type}]",
    ):
        if max_hold < 1:
            raise ValueError("max_hold must be at least 1")
        self._scanner = scanner
        self._max_hold = max_hold
        self._label = label
        self._pending = ""  # raw text received and not yet sent
        self._context = ""  # the last raw characters already dealt with
        self._rest: Continuation | None = None  # swallowing an open-ended value
        # Values redacted so far, by type (for telemetry; never the values).
        self.redacted: Counter[str] = Counter()

    @property
    def held(self) -> int:
        """Characters received and not yet sent."""
        return len(self._pending)

    def feed(self, delta: str) -> str:
        self._pending += delta
        return self._drain(final=False)

    def flush(self) -> str:
        out = self._drain(final=True)
        self._rest = None
        return out

    def _drain(self, final: bool) -> str:
        out: list[str] = []
        while self._pending:
            if self._rest is not None:
                used, ended = self._rest.consume(self._pending)
                self._advance(used)
                if not ended:
                    break
                self._rest = None
                continue
            text = self._context + self._pending
            base = len(self._context)
            found = self._scanner.find_all(text, base)
            kept = resolve(found)
            last = kept[-1] if kept else None
            if not final and last is not None and last.end == len(text):
                rest = self._scanner.continuation(last, text)
                if rest is not None:  # open-ended: replace now, drop the rest as it comes
                    out.append(self._emit(text, base, kept[:-1], last.start))
                    out.append(self._label(last))
                    self.redacted[last.type] += 1
                    self._advance(last.end - last.start)
                    self._rest = rest
                    continue
            cut = len(text) if final else self._cut(text, base, found)
            out.append(self._emit(text, base, kept, cut))
            break
        return "".join(out)

    def _cut(self, text: str, base: int, found: list[Span]) -> int:
        """How far the text is settled: before any growable suffix, never inside a value."""
        # The search may start a little into the context (a key name before a split
        # value) but never holds what was already sent.
        window = max(0, base - _TAIL_LOOKBACK, len(text) - self._max_hold)
        cut = max(base, self._scanner.hold_from(text, window))
        moved = True
        while moved:
            moved = False
            for span in found:
                if span.start < cut < span.end:
                    cut, moved = span.start, True
        return cut

    def _emit(self, text: str, base: int, spans: list[Span], cut: int) -> str:
        inside = [s for s in spans if s.end <= cut]
        self.redacted.update(s.type for s in inside)
        shifted = [Span(s.start - base, s.end - base, s.type, s.label) for s in inside]
        out = replace_spans(text[base:cut], shifted, lambda span, _: self._label(span))
        self._advance(cut - base)
        return out

    def _advance(self, count: int) -> None:
        self._context = (self._context + self._pending[:count])[-_CONTEXT:]
        self._pending = self._pending[count:]


class StreamRestorer:
    """Puts pseudonymized originals back into streamed text, placeholders split or not."""

    def __init__(self, vault: PseudonymVault, *, max_hold: int = 32):
        self._vault = vault
        self._max_hold = max_hold
        self._pending = ""

    def feed(self, delta: str) -> str:
        self._pending += delta
        text = self._pending
        match = _PLACEHOLDER_TAIL.search(text, max(0, len(text) - self._max_hold))
        cut = len(text) if match is None else match.start()
        self._pending = text[cut:]
        return self._vault.restore(text[:cut])

    def flush(self) -> str:
        out, self._pending = self._vault.restore(self._pending), ""
        return out


class ChainedFilter:
    """``second`` applied to what ``first`` lets through (redact, then restore)."""

    def __init__(self, first: TextFilter, second: TextFilter):
        self._first = first
        self._second = second

    def feed(self, delta: str) -> str:
        return self._second.feed(self._first.feed(delta))

    def flush(self) -> str:
        return self._second.feed(self._first.flush()) + self._second.flush()
