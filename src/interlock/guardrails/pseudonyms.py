"""Reversible pseudonymization: ``[EMAIL_1]`` in, the original back out.

A ``PseudonymVault`` lives for one request. The same value always gets the
same placeholder, numbered per type in order of first appearance, so the
model can still tell two people apart; ``restore`` puts the originals back
into the answer. The vault holds the originals in memory only and never
shows them in its ``repr``.
"""

from __future__ import annotations

import re

from interlock.guardrails.spans import Span

__all__ = ["PLACEHOLDER_TAIL", "PseudonymVault"]

_PLACEHOLDER = re.compile(r"\[[A-Z][A-Z0-9_]*_\d+\]")
# What a stream holds back: the start of a placeholder that may be split.
PLACEHOLDER_TAIL = r"\[[A-Z0-9_]{0,24}\Z"


class PseudonymVault:
    """Placeholders for one request's values."""

    def __init__(self) -> None:
        self._placeholders: dict[tuple[str, str], str] = {}
        self._originals: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def placeholder(self, span: Span, value: str) -> str:
        """The placeholder for ``value`` (a ``Replacer``): new or the one it already has."""
        key = (span.type, value)
        existing = self._placeholders.get(key)
        if existing is not None:
            return existing
        number = self._counts.get(span.type, 0) + 1
        self._counts[span.type] = number
        placeholder = f"[{span.type}_{number}]"
        self._placeholders[key] = placeholder
        self._originals[placeholder] = value
        return placeholder

    def restore(self, text: str) -> str:
        """``text`` with every known placeholder replaced by its original."""
        if not self._originals or "[" not in text:
            return text
        return _PLACEHOLDER.sub(lambda m: self._originals.get(m.group(), m.group()), text)

    def __len__(self) -> int:
        return len(self._originals)

    def __repr__(self) -> str:
        return f"PseudonymVault({len(self)} values)"
