"""Adapter for OpenAI models served on the Responses API alone
(``provider: openai`` with ``api: responses``).

Chat requests go to the upstream's ``/responses``, translated both ways
(``openai_responses_wire``, ``_answer``, ``_stream``), so every edge and
pipeline stage reaches these models as it reaches any other. Everything
else (embeddings, moderations, a native legacy completion) is the
OpenAI-compatible adapter's.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager

from interlock.chat_markers import LEGACY_COMPLETION
from interlock.config import DeploymentConfig
from interlock.errors import UpstreamProtocolError
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.openai_compat import OpenAICompatibleProvider
from interlock.providers.openai_responses_answer import UpstreamFailed, chat_completion
from interlock.providers.openai_responses_stream import ChunkWriter
from interlock.providers.openai_responses_wire import responses_body
from interlock.redaction import Redactor

__all__ = ["OpenAIResponsesProvider"]


class OpenAIResponsesProvider(OpenAICompatibleProvider):
    def __init__(self, deployment: DeploymentConfig, redactor: Redactor | None = None):
        super().__init__(deployment, redactor)
        self._drop = frozenset(deployment.drop_params)
        # OpenAI's Responses API runs the hosted web search where its models can.
        self.runs_hosted_web_search = self._searches = deployment.native_web_search
        self._responses_url = self._endpoint(deployment, "responses")

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        if LEGACY_COMPLETION in body:  # sent to this upstream's /completions
            return await super().chat(body, ctx)
        upstream = self._patched(
            responses_body(body, self._model, self._drop, searches=self._searches)
        )
        result = await self._client.request_json(
            "POST", self._responses_url, upstream, self._headers(ctx)
        )
        with self._translated():
            return chat_completion(result)

    def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        if LEGACY_COMPLETION in body:
            return super().stream_chat(body, ctx)
        return self._stream_response(body, ctx)

    async def _stream_response(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        upstream = self._patched(
            responses_body(body, self._model, self._drop, searches=self._searches)
        )
        # Each delta's ``obfuscation`` padding is for browsers; a server needs none.
        upstream.update(stream=True, stream_options={"include_obfuscation": False})
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        writer = ChunkWriter(self._model, include_usage)
        events = self._client.stream_sse(self._responses_url, upstream, self._headers(ctx))
        async with aclosing(events):  # closing at the last event keeps the connection pooled
            async for event in events:
                with self._translated(mid_stream=True):
                    written = writer.feed(self._event_object(event.data))
                for chunk in written:
                    yield chunk
                if writer.finished:
                    return
        raise UpstreamProtocolError(
            "upstream stream ended before response.completed", deployment=self.deployment_id
        )

    @contextmanager
    def _translated(self, *, mid_stream: bool = False) -> Iterator[None]:
        """A malformed answer as a protocol error, a failed one as its status."""
        with self._shape_checked():
            try:
                yield
            except UpstreamFailed as failed:
                raise self._upstream_error(
                    failed.status, failed.detail, mid_stream=mid_stream
                ) from None
