"""The simulator's moderation answers: OpenAI's ``moderation`` result shape,
scored by keywords, not by a model.

Each category's score is a small deterministic number for the text (the
same text, the same scores), unless the text holds one of the category's
words: then 0.9 and up, the category and the result ``flagged``. Enough to
drive an application's moderation path end to end on ``make run``; nothing
to rely on for safety, and the simulator says so (``owned_by``).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

__all__ = ["CATEGORIES", "moderation_result"]

JSONDict = dict[str, Any]

# OpenAI's categories (omni-moderation), each with the words that flag it here.
CATEGORIES: dict[str, tuple[str, ...]] = {
    "harassment": ("idiot", "loser", "stupid"),
    "harassment/threatening": ("i will hurt you", "watch your back"),
    "hate": ("hate them all",),
    "hate/threatening": ("wipe them out",),
    "illicit": ("steal", "counterfeit"),
    "illicit/violent": ("build a bomb",),
    "self-harm": ("hurt myself",),
    "self-harm/intent": ("end my life",),
    "self-harm/instructions": ("how to self-harm",),
    "sexual": ("explicit sex",),
    "sexual/minors": ("sexual minor",),
    "violence": ("kill", "attack", "shoot"),
    "violence/graphic": ("gore", "dismember"),
}
_FLAGGED_SCORE = 0.9
_WORD_EDGE = {
    phrase: re.compile(rf"\b{re.escape(phrase)}\b")
    for words in CATEGORIES.values()
    for phrase in words
}


def moderation_result(text: str, seed: int, kinds: frozenset[str]) -> JSONDict:
    """One input's result; ``kinds``: the input types it had (``text``, ``image``)."""
    lowered = text.lower()
    categories: dict[str, bool] = {}
    scores: dict[str, float] = {}
    for index, (name, phrases) in enumerate(CATEGORIES.items()):
        hit = any(_WORD_EDGE[phrase].search(lowered) for phrase in phrases)
        base = _small_score(f"{seed}:{index}:{text}")
        categories[name] = hit
        scores[name] = round(_FLAGGED_SCORE + base * 100, 6) if hit else base
    applied = sorted(kinds) or ["text"]
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": scores,
        "category_applied_input_types": {name: applied for name in CATEGORIES},
    }


def _small_score(key: str) -> float:
    """A deterministic score below 0.001."""
    digest = hashlib.blake2b(key.encode(), digest_size=4).digest()
    return round(int.from_bytes(digest, "big") / 2**32 / 1000, 8)
