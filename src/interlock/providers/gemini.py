"""Adapter for Google's Gemini API (the Generative Language API, ``v1beta``).

What it translates:

- chat requests to ``models/{model}:generateContent`` and, streaming, to
  ``:streamGenerateContent?alt=sse``. System and developer messages become
  ``systemInstruction`` (all of them, in order, wherever they stand: Gemini
  has one); ``user`` stays ``user`` and ``assistant`` becomes ``model``;
  consecutive turns of one role are merged, because Gemini wants turns to
  alternate. ``max_completion_tokens``/``max_tokens``, ``stop``,
  ``temperature``, ``top_p``, ``n``, ``seed``, the two penalties and
  ``response_format`` ``json_object`` go to ``generationConfig``;
- Gemini responses to ``chat.completion`` objects and SSE fragments to
  ``chat.completion.chunk`` objects, with usage from ``usageMetadata``
  (thinking tokens count as completion tokens, as OpenAI counts reasoning);
- embeddings to ``:batchEmbedContents``.

What it does not translate, raising ``InvalidRequest``: images and other
non-text content parts, tool calling (``tools``, ``functions``, ``tool`` and
``function`` messages, assistant ``tool_calls``), ``logprobs``,
``response_format`` ``json_schema``, and token-id embedding inputs. Other
OpenAI fields Gemini has no counterpart for (``user``, ...) are dropped.

A prompt Gemini blocks (``promptFeedback.blockReason`` and no candidates) is
answered as a completion whose ``n`` choices finish with ``content_filter``
and empty content, not as an error: that is how OpenAI reports filtered
output, clients already handle it, and a 400 would blame the request's shape.

A 200 body that is not the documented shape, or a stream that ends before
every candidate reported its ``finishReason``, is an
``UpstreamProtocolError``. The API key travels in the ``x-goog-api-key``
header, never in the URL, so it cannot leak into access logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import orjson

from interlock.config import DeploymentConfig
from interlock.errors import UpstreamProtocolError
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.gemini_wire import (
    ChunkStream,
    ShapeError,
    chat_request,
    choice_count,
    completion,
    embedding_texts,
    embeddings,
)
from interlock.providers.http import HttpProvider
from interlock.redaction import Redactor

__all__ = ["GeminiProvider"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"


class GeminiProvider(HttpProvider):
    provider_name = "gcp.gemini"

    def __init__(self, deployment: DeploymentConfig, redactor: Redactor | None = None):
        assert deployment.model  # guaranteed by config validation
        headers = {}
        if deployment.api_key is not None:
            headers["x-goog-api-key"] = deployment.api_key.reveal()
        super().__init__(deployment, headers, redactor)
        self._model = deployment.model.removeprefix("models/")
        base_url = deployment.base_url or DEFAULT_BASE_URL
        self._model_url = f"{base_url}/v1beta/models/{self._model}"

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        request = chat_request(body)
        response = await self._client.request_json(
            "POST", f"{self._model_url}:generateContent", request, self._headers(ctx)
        )
        with self._shape_checked():
            return completion(response, choice_count(body), self._model)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        request = chat_request(body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = ChunkStream(self._model, choice_count(body), include_usage)
        url = f"{self._model_url}:streamGenerateContent?alt=sse"
        # stream_sse is an async generator; closing it at once closes the upstream
        # connection when our caller stops early or we raise.
        events = self._client.stream_sse(url, request, self._headers(ctx))
        async with aclosing(events):
            async for event in events:
                response = self._parse_event(event.data)
                with self._shape_checked():
                    out = chunks.feed(response)
                for chunk in out:
                    yield chunk
        with self._shape_checked():
            out = chunks.close()
        for chunk in out:
            yield chunk

    def _parse_event(self, data: bytes) -> Any:
        try:
            response = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                "upstream sent a stream event that is not JSON", deployment=self.deployment_id
            ) from None
        if isinstance(response, dict) and "error" in response:
            raise self._upstream_error(502, data, mid_stream=True)
        return response

    async def embed(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        texts = embedding_texts(body.get("input"))
        item: JSONDict = {"model": f"models/{self._model}"}
        if body.get("dimensions") is not None:
            item["outputDimensionality"] = body["dimensions"]
        request = {"requests": [{**item, "content": {"parts": [{"text": t}]}} for t in texts]}
        response = await self._client.request_json(
            "POST", f"{self._model_url}:batchEmbedContents", request, self._headers(ctx)
        )
        with self._shape_checked():
            return embeddings(response, len(texts), self._model)

    @contextmanager
    def _shape_checked(self) -> Iterator[None]:
        try:
            yield
        except ShapeError as exc:
            raise UpstreamProtocolError(str(exc), deployment=self.deployment_id) from None
