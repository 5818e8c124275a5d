"""The PII scanner: a set of detectors, run together, overlaps settled.

``PiiScanner.for_types(["EMAIL", "CARD"])`` builds the default detectors for
those types. The scanner is immutable and stateless: one per configuration,
shared by every request.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence

from interlock.guardrails.pii_contact import EmailDetector, PhoneDetector
from interlock.guardrails.pii_network import Ipv4Detector, Ipv6Detector
from interlock.guardrails.pii_numbers import CardDetector, IbanDetector, SsnDetector
from interlock.guardrails.secrets import SecretDetector
from interlock.guardrails.spans import (
    Continuation,
    Detector,
    OpenEnded,
    Replacer,
    Span,
    label_replacer,
    replace_spans,
    resolve,
)

__all__ = ["DETECTORS", "PII_TYPES", "PiiScanner"]

DETECTORS: dict[str, Callable[[], Detector]] = {
    "EMAIL": EmailDetector,
    "PHONE": PhoneDetector,
    "CARD": CardDetector,
    "US_SSN": SsnDetector,
    "IPV4": Ipv4Detector,
    "IPV6": Ipv6Detector,
    "IBAN": IbanDetector,
    "SECRET": SecretDetector,
}
PII_TYPES = tuple(DETECTORS)
_TRIGGER_LOOKBACK = 64
# Past this length only a detector's first trigger is tested: a long text that
# holds the first (a digit) mostly holds the finer ones too, or a search for
# them that fails costs about what the detector itself does.
_FINE_TRIGGER_MAX = 1024
# Up to this length one regex over every detector's first test (its hints, or
# its first trigger) clears a text with none of them in a single call.
_QUICK_MAX = 256


class PiiScanner:
    """Runs its detectors over a text; knows what a stream must hold back."""

    def __init__(self, detectors: Sequence[Detector]):
        self._detectors = tuple(detectors)
        self.types = frozenset(d.type for d in self._detectors)
        # Detectors sharing hints or a trigger are skipped together when it is absent.
        self._triggers = {
            source: re.compile(source) for d in self._detectors for source in d.trigger
        }
        self._quick = _quick_pattern(self._detectors)
        tails = [f"(?:{d.tail})" for d in self._detectors if d.tail]
        self._tail = re.compile("|".join(tails)) if tails else None
        blanks = [f"(?:{d.blank_tail})" for d in self._detectors if d.tail and d.blank_tail]
        self._blank_tail = re.compile("|".join(blanks)) if blanks else None
        self._open: dict[str, OpenEnded] = {
            d.type: d for d in self._detectors if isinstance(d, OpenEnded)
        }

    @classmethod
    def for_types(cls, types: Iterable[str] | None = None) -> PiiScanner:
        """The built-in detectors for ``types`` (all of them when ``None``)."""
        names = PII_TYPES if types is None else tuple(dict.fromkeys(t.upper() for t in types))
        unknown = [name for name in names if name not in DETECTORS]
        if unknown:
            raise ValueError(f"unknown PII types {unknown}; known: {list(PII_TYPES)}")
        return cls([DETECTORS[name]() for name in names])

    def find_all(self, text: str, start: int = 0) -> list[Span]:
        """Every detector's spans starting at or after ``start``, overlaps included."""
        if len(text) <= _QUICK_MAX and self._quick is not None and not self._quick.search(text):
            return []
        spans: list[Span] = []
        hinted: dict[tuple[str, ...], bool] = {}
        # Context before ``start`` can hold a key's name (aws_secret_access_key = ...).
        lookback = max(0, start - _TRIGGER_LOOKBACK)
        fine = len(text) - lookback <= _FINE_TRIGGER_MAX
        present: dict[str, bool] = {}
        for detector in self._detectors:
            hints = detector.hints
            if hints:
                found = hinted.get(hints)
                if found is None:
                    found = hinted[hints] = any(hint in text for hint in hints)
                if not found:
                    continue
            trigger = detector.trigger if fine else detector.trigger[:1]
            if trigger and not self._triggered(trigger, text, lookback, present):
                continue
            spans.extend(detector.find(text, start))
        return spans

    def _triggered(
        self, sources: tuple[str, ...], text: str, lookback: int, present: dict[str, bool]
    ) -> bool:
        for source in sources:
            found = present.get(source)
            if found is None:
                found = present[source] = self._triggers[source].search(text, lookback) is not None
            if not found:
                return False
        return True

    def find(self, text: str) -> list[Span]:
        """Non-overlapping spans, left to right."""
        return resolve(self.find_all(text))

    def redact(self, text: str, replace: Replacer = label_replacer) -> str:
        """``text`` with every value replaced (``[EMAIL]`` by default)."""
        spans = self.find(text)
        return replace_spans(text, spans, replace) if spans else text

    def hold_from(self, text: str, pos: int) -> int:
        """Where, at or after ``pos``, the suffix that could still grow into a value
        starts; ``len(text)`` when nothing at the end needs holding."""
        if self._tail is None:
            return len(text)
        if self._blank_tail is None or self._blank_tail.search(text, pos) is None:
            # No tail can hold a blank here: it lies within the last word.
            pos = max(pos, max(text.rfind(" "), text.rfind("\n"), text.rfind("\t")) + 1)
        match = self._tail.search(text, pos)
        return len(text) if match is None else match.start()

    def continuation(self, span: Span, text: str) -> Continuation | None:
        """For a span reaching the end of ``text``: how a stream swallows the rest
        of an open-ended value, or ``None`` (bounded value, or already complete)."""
        detector = self._open.get(span.type)
        return None if detector is None else detector.continuation(span, text)


def _quick_pattern(detectors: Sequence[Detector]) -> re.Pattern[str] | None:
    """A regex found in every text some detector would run on; None when a
    detector always runs. Where it finds nothing, no detector can find a value."""
    sources: list[str] = []
    for detector in detectors:
        if detector.hints:
            sources.extend(re.escape(hint) for hint in detector.hints)
        elif detector.trigger:
            sources.append(f"(?:{detector.trigger[0]})")
        else:
            return None
    return re.compile("|".join(dict.fromkeys(sources)))
