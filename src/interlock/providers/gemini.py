"""Adapter for Google's Gemini API (the Generative Language API, ``v1beta``).

What it translates:

- chat requests to ``models/{model}:generateContent`` and, streaming, to
  ``:streamGenerateContent?alt=sse``. System and developer messages become
  ``systemInstruction`` (all of them, in order, wherever they stand: Gemini
  has one); ``user`` stays ``user``, ``assistant`` becomes ``model``, and
  ``tool`` (and legacy ``function``) results become ``user`` turns of
  ``functionResponse`` parts, named after the call they answer; consecutive
  turns of one role are merged, because Gemini wants turns to alternate.
- tools: ``tools``/``functions`` to ``functionDeclarations`` (parameters
  through ``gemini_schema``), ``tool_choice``/``function_call`` to
  ``toolConfig.functionCallingConfig`` (``auto`` AUTO, ``none`` NONE,
  ``required`` ANY, a named function ANY with ``allowedFunctionNames``);
  assistant ``tool_calls`` to ``functionCall`` parts; answers' function calls
  back to ``tool_calls``, streamed whole (opened, then all arguments). Thought
  signatures travel inside the tool-call ids (``gemini_wire`` says how).
- images: ``data:`` URLs to ``inlineData``. Gemini takes no arbitrary URLs,
  so ``https:`` images are fetched and inlined first by ``ImageInliner``,
  from the deployment's ``fetch_images_from`` hosts only (others: a 400,
  with no connection made).
- ``response_format``: ``json_object`` to ``responseMimeType``
  ``application/json``; ``json_schema`` adds ``responseSchema`` (converted by
  ``gemini_schema``; a recursive schema is a 400).
- ``reasoning_effort`` to ``thinkingConfig`` (``thinkingBudget`` from the
  shared ladder, ``includeThoughts``; ``none`` turns thinking off); thought
  parts come back as ``reasoning_content``, thinking tokens as
  ``completion_tokens_details.reasoning_tokens``.
- ``max_completion_tokens``/``max_tokens``, ``stop``, ``temperature``,
  ``top_p``, ``n``, ``seed`` and the two penalties to ``generationConfig``;
  usage from ``usageMetadata``; embeddings to ``:batchEmbedContents``.

Refused with a 400 naming the parameter unless the deployment lists it in
``drop_params``: ``logprobs``/``top_logprobs``, ``logit_bias``,
``parallel_tool_calls: false`` (Gemini cannot be told to call one function
at a time; through the pipeline it never arrives here, as the gateway keeps
a turn's first call itself: ``pipeline/single_call.py``), audio output
and the other OpenAI-only answer parameters
(``openai_request.checked_params``). Always refused: content parts other
than text, images and documents, image URLs the operator has not allowed,
and token-id embedding inputs. Fields that describe the caller (``user``, ...) are dropped.

A prompt Gemini blocks (``promptFeedback.blockReason`` and no candidates) is
answered as a completion whose ``n`` choices finish with ``content_filter``
and empty content, not as an error: that is how OpenAI reports filtered
output, clients already handle it, and a 400 would blame the request's shape.

An error object in a stream keeps the status its ``code`` (or google.rpc
``status``) stands for: a mid-stream ``RESOURCE_EXHAUSTED`` is a 429,
``UNAVAILABLE`` a 503. A 200 body that is not the documented shape, or a
stream that ends before every candidate reported its ``finishReason``, is an
``UpstreamProtocolError``. The API key travels in the ``x-goog-api-key``
header, never in the URL, so it cannot leak into access logs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import orjson

from interlock.config import DeploymentConfig
from interlock.errors import UpstreamProtocolError
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.gemini_response import (
    ChunkStream,
    choice_count,
    completion,
    embeddings,
    stream_error_status,
)
from interlock.providers.gemini_wire import chat_request, embedding_texts
from interlock.providers.http import HttpProvider
from interlock.providers.image_fetch import ImageInliner
from interlock.providers.openai_request import checked_params
from interlock.redaction import Redactor

__all__ = ["SUPPORTED_PARAMS", "GeminiProvider"]

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com"
# The answer parameters Gemini can honour (the rest: ``checked_params``).
SUPPORTED_PARAMS = frozenset(
    {
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "n",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "tools",
        "tool_choice",
        "functions",
        "function_call",
        "response_format",
        "reasoning_effort",
    }
)


class GeminiProvider(HttpProvider):
    provider_name = "gcp.gemini"
    limits_parallel_calls = False

    def __init__(self, deployment: DeploymentConfig, redactor: Redactor | None = None):
        assert deployment.model  # guaranteed by config validation
        headers = {}
        if deployment.api_key is not None:
            headers["x-goog-api-key"] = deployment.api_key.reveal()
        super().__init__(deployment, headers, redactor)
        self._model = deployment.model.removeprefix("models/")
        base_url = deployment.base_url or DEFAULT_BASE_URL
        self._model_url = f"{base_url}/v1beta/models/{self._model}"
        self._drop = frozenset(deployment.drop_params)
        self._images = ImageInliner(deployment, "gemini")

    async def start(self) -> None:
        await super().start()
        await self._images.start()

    async def aclose(self) -> None:
        try:
            await self._images.aclose()
        finally:
            await super().aclose()

    async def _request(self, body: JSONDict) -> JSONDict:
        body = checked_params(body, "gemini", SUPPORTED_PARAMS, self._drop)
        return self._patched(chat_request(await self._images.inline(body)))

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        request = await self._request(body)
        response = await self._client.request_json(
            "POST", f"{self._model_url}:generateContent", request, self._headers(ctx)
        )
        with self._shape_checked():
            return completion(response, choice_count(body), self._model)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        request = await self._request(body)
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
            status = stream_error_status(response["error"])
            raise self._upstream_error(status, data, mid_stream=True)
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
