"""In-process embeddings: the packaged all-MiniLM-L6-v2 (``provider:
sentence-transformers``), for offline semantic re-ranking and search.

It needs the ``injection-model`` extra (``interlock.minilm`` loads it, never
from a hub); without it the gateway refuses to start, naming the extra. The
model loads at ``start()`` in a worker thread, so the gateway's own default
model starts in the time it always did when no deployment names this one.

Encoding is CPU-heavy (milliseconds a text), so it never runs on the event
loop: each request's inputs go in batches of ``BATCH`` to this deployment's
own thread pool, whose size is the bound on batches encoding at once; other
requests' batches take turns with them. Behaviour from ``params``:

===========  ================================================================
``threads``  workers encoding at once (default 1, at most 8). torch already
             spreads one batch over the machine's cores, so more than 2
             rarely helps.
===========  ================================================================

What a request may ask is bounded: the edge takes at most 2,048 inputs;
each is cut to ``MAX_INPUT_CHARS`` characters before it is tokenized, and
the model reads at most 256 word pieces of it (about 1,000 characters of
English; sentence-transformers truncates there), so the cut never changes a
vector of ordinary text. Vectors are unit length and 384 wide: a request
for other ``dimensions`` is a 400, as are token-id inputs (the ids of
another tokenizer mean nothing to this model). Chat is a 400 too.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from interlock.config import ConfigError, DeploymentConfig
from interlock.errors import InvalidRequest, UnsupportedOperation
from interlock.minilm import DIMENSIONS, MiniLMUnavailable, load_minilm, require_extra
from interlock.providers.base import CallContext, JSONDict, Provider

__all__ = [
    "BATCH",
    "MAX_INPUT_CHARS",
    "Encoder",
    "SentenceEmbeddingParams",
    "SentenceEmbeddingProvider",
]

# Texts encoded in one pool job: sentence-transformers' own batch size.
BATCH = 32
# Characters of an input tokenized: well past what 256 word pieces cover
# (the longest piece is 16 characters), so only the tokenizer's work on a
# huge input is cut, never what the model reads of ordinary text.
MAX_INPUT_CHARS = 8192


class Encoder(Protocol):
    """What the provider needs of the model (``interlock.minilm.MiniLM``). Blocking."""

    def embed(self, texts: Sequence[str]) -> Sequence[Sequence[float]]: ...

    def token_counts(self, texts: Sequence[str]) -> Sequence[int]: ...


class SentenceEmbeddingParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    threads: int = Field(default=1, ge=1, le=8)


class SentenceEmbeddingProvider(Provider):
    """Embeddings from a model in this process; ``loader`` (blocking) gives
    the encoder at ``start()``: the packaged MiniLM unless a test injects one."""

    owned_by = "sentence-transformers"
    provider_name = "interlock.sentence_transformers"

    def __init__(
        self, deployment: DeploymentConfig, *, loader: Callable[[], Encoder] | None = None
    ):
        self.deployment_id = deployment.id
        try:
            self.params = SentenceEmbeddingParams.model_validate(deployment.params)
            if loader is None:
                require_extra()
        except (ValidationError, MiniLMUnavailable) as exc:
            raise ConfigError(f"deployment {deployment.id}: {exc}") from None
        self._loader: Callable[[], Encoder] = loader or load_minilm
        self._encoder: Encoder | None = None
        self._pool = ThreadPoolExecutor(
            self.params.threads, thread_name_prefix=f"embed-{deployment.id}"
        )

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._encoder = await loop.run_in_executor(self._pool, self._loader)
        except MiniLMUnavailable as exc:
            raise ConfigError(f"deployment {self.deployment_id}: {exc}") from None

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        raise _no_chat(ctx)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        raise _no_chat(ctx)
        yield b""  # pragma: no cover - makes this a stream that fails when read

    async def embed(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        encoder = self._encoder
        if encoder is None:
            raise RuntimeError(f"deployment {self.deployment_id} was not started")
        dimensions = body.get("dimensions")
        if dimensions is not None and dimensions != DIMENSIONS:
            raise InvalidRequest(
                f"The model `{ctx.public_model}` makes {DIMENSIONS}-dimensional vectors; "
                f"it cannot give {dimensions}.",
                param="dimensions",
            )
        texts = [text[:MAX_INPUT_CHARS] for text in _texts(body.get("input"))]
        loop = asyncio.get_running_loop()
        data: list[JSONDict] = []
        tokens = 0
        for at in range(0, len(texts), BATCH):
            vectors, counts = await loop.run_in_executor(
                self._pool, _encode, encoder, texts[at : at + BATCH]
            )
            for offset, vector in enumerate(vectors):
                data.append({"object": "embedding", "index": at + offset, "embedding": vector})
            tokens += sum(counts)
        return {
            "object": "list",
            "data": data,
            "model": ctx.public_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


def _encode(
    encoder: Encoder, texts: Sequence[str]
) -> tuple[Sequence[Sequence[float]], Sequence[int]]:
    """One pool job: a batch's vectors and token counts."""
    return encoder.embed(texts), encoder.token_counts(texts)


def _texts(raw: Any) -> list[str]:
    """The request's inputs as text; token ids are refused (400)."""
    if isinstance(raw, str):
        return [raw]
    items = list(raw or [])
    if not all(isinstance(item, str) for item in items):
        raise InvalidRequest(
            "This model takes text inputs, not token ids: send strings.", param="input"
        )
    return items


def _no_chat(ctx: CallContext) -> UnsupportedOperation:
    return UnsupportedOperation(
        f"The model `{ctx.public_model}` serves embeddings only; it does not support "
        "chat completions.",
        param="model",
    )
