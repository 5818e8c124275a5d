"""Content checks: a configurable word list, and a protocol for classifiers.

``WordListClassifier`` matches whole words (``\\b`` on both sides, case
folded), so "Scunthorpe", "assassin" and "Dickens" pass. A trailing ``*``
in a list entry matches any word ending (``fuck*`` also catches "fucking").
A model-based classifier plugs in through ``ContentClassifier``; it must be
pure and fast enough to run inline, or run by the caller beforehand.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from interlock.guardrails.spans import matches_at_boundary

__all__ = ["DEFAULT_WORDS", "ContentClassifier", "ContentVerdict", "WordListClassifier"]

# Deliberately small: common English profanity. Operators extend or replace it.
DEFAULT_WORDS: tuple[str, ...] = (
    "fuck*", "motherfuck*", "shit", "shits", "shitty", "shithead*", "bullshit", "bitch*",
    "asshole*", "bastard*", "cunt*", "dickhead*", "wanker*", "twat*", "prick", "pricks",
    "slut*", "whore*", "douchebag*", "piss off", "son of a bitch",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class ContentVerdict:
    """What a classifier thinks of one text. Names categories, never the words."""

    flagged: bool
    score: float = 0.0
    categories: tuple[str, ...] = ()


class ContentClassifier(Protocol):
    """Anything that can judge a text: a word list, a small local model, ..."""

    name: str

    def classify(self, text: str) -> ContentVerdict: ...


class WordListClassifier:
    """Flags text containing any listed word or phrase (category ``profanity``)."""

    name = "wordlist"

    def __init__(self, words: Iterable[str] = DEFAULT_WORDS, category: str = "profanity"):
        entries = {word.strip().lower() for word in words if word.strip()}
        self._category = category
        # Literal stems, one of which any match contains: most texts stop here.
        self._stems = tuple(entry.rstrip("*").split()[0] for entry in entries)
        alternatives = sorted((_entry(entry) for entry in entries), key=len, reverse=True)
        # No leading \b: a pattern that starts with its words lets ``re`` skip
        # ahead fast; the boundary before a match is checked by hand.
        self._pattern = re.compile(r"(?:" + "|".join(alternatives) + r")\b") if entries else None

    def classify(self, text: str) -> ContentVerdict:
        if self._pattern is None:
            return ContentVerdict(False)
        lowered = text.lower()
        if not any(stem in lowered for stem in self._stems):
            return ContentVerdict(False)
        for _ in matches_at_boundary(self._pattern, lowered, 0, ""):
            return ContentVerdict(True, 1.0, (self._category,))
        return ContentVerdict(False)


def _entry(word: str) -> str:
    stem, wildcard = (word[:-1], True) if word.endswith("*") else (word, False)
    source = r"\s+".join(re.escape(part) for part in stem.split())
    return source + r"\w*" if wildcard else source
