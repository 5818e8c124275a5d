"""Semantic re-ranking: the backend's candidates put in order of their
embeddings' cosine similarity to the question's.

The embeddings come from the gateway's own ``/v1/embeddings`` pipeline
(``search.rerank.model``: any embedding model group this gateway serves),
so the call is admitted, cached, routed and accounted like any other. One
call embeds the question and every candidate's title and snippet. Pure
ordering here: the caller decides what a failure means (the service keeps
the backend's order).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from interlock.search.backends.base import SearchResult

__all__ = ["embedding_input", "reorder"]

# Characters of a result's text embedded: enough for a snippet's meaning.
_TEXT_CHARS = 1000


def embedding_input(query: str, results: Sequence[SearchResult]) -> list[str]:
    """What to embed: the question, then each result's title and snippet."""
    return [query, *(f"{r.title}. {r.snippet}"[:_TEXT_CHARS] for r in results)]


def reorder(
    results: Sequence[SearchResult], answer: dict[str, Any], keep: int
) -> list[SearchResult]:
    """``results`` best first by cosine similarity to the question, ranked
    1, 2, ... again, at most ``keep``; ``answer`` is the embeddings response
    for ``embedding_input``. Equal scores keep the backend's order."""
    data = sorted(answer["data"], key=lambda item: item["index"])
    vectors = [item["embedding"] for item in data]
    if len(vectors) != len(results) + 1:
        raise ValueError(f"expected {len(results) + 1} embeddings, got {len(vectors)}")
    question, candidates = vectors[0], vectors[1:]
    scores = [_cosine(question, vector) for vector in candidates]
    order = sorted(range(len(results)), key=lambda i: (-scores[i], i))
    return [replace(results[i], rank=rank) for rank, i in enumerate(order[:keep], start=1)]


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
