"""Adapter for Anthropic's Messages API (``POST /v1/messages``).

Translated (``anthropic_wire`` does it, without I/O):

- messages: system and developer messages are hoisted into ``system``; user
  text and images (``data:`` URLs inline as base64, ``https:`` URLs passed as
  URL sources, which Anthropic fetches itself); assistant text, ``tool_calls``
  (``tool_use`` blocks) and ``thinking_blocks`` (sent back first, as
  Anthropic needs them in tool loops with thinking); ``tool`` results as
  ``tool_result`` blocks. Same-role runs merge, since Anthropic requires
  alternation, and tool results lead their user turn;
- ``tools`` / ``functions``, ``tool_choice`` and ``parallel_tool_calls``;
  ``response_format`` as a forced JSON tool whose input comes back as the
  content (``anthropic_wire``'s docstring says why); ``reasoning_effort`` as a
  ``thinking`` budget, or a native ``thinking`` object as it is;
- ``cache_control`` markers on content parts, messages, system messages and
  tools, passed through for prompt caching;
- ``max_tokens`` / ``max_completion_tokens``, ``stop``, ``temperature``,
  ``top_p``, ``top_k`` and ``user``;
- answers and streamed events back into ``chat.completion`` objects and
  chunks: text, tool calls, thinking as ``reasoning_content`` and
  ``thinking_blocks``, usage (cached input tokens count as prompt tokens, and
  ``prompt_tokens_details`` says how many were cache reads and writes).

Refused with a 400 naming the field rather than silently dropped: other
OpenAI parameters (``n`` > 1, penalties, ``seed``, ``logprobs`` ...) unless
the deployment lists them in ``drop_params``; audio and file content parts;
``temperature``/``top_p``/``top_k`` outside what Anthropic allows with
thinking, and thinking together with a forced tool call or
``response_format``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing

from interlock.config import DeploymentConfig
from interlock.errors import UpstreamProtocolError, UpstreamStatusError
from interlock.providers.anthropic_answer import completion
from interlock.providers.anthropic_stream import StreamTranslator
from interlock.providers.anthropic_wire import chat_request
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.http import HttpProvider
from interlock.redaction import Redactor
from interlock.tokens import TokenCounter

__all__ = ["AnthropicProvider"]

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"
# The HTTP status Anthropic documents for each error type, for errors that
# arrive as a stream event after the 200 status was sent.
_ERROR_STATUSES = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicProvider(HttpProvider):
    provider_name = "anthropic"
    takes_context_management = True
    takes_deferred_tools = True
    takes_anthropic_tools = True
    takes_web_search_options = True
    runs_hosted_web_search = True

    def __init__(
        self,
        deployment: DeploymentConfig,
        redactor: Redactor | None = None,
        counter: TokenCounter | None = None,
    ):
        """``counter`` estimates reasoning tokens, which Anthropic does not report."""
        assert deployment.model  # guaranteed by config validation
        headers = {"anthropic-version": API_VERSION}
        if deployment.api_key is not None:
            headers["x-api-key"] = deployment.api_key.reveal()
        super().__init__(deployment, headers, redactor)
        self._model = deployment.model
        self._drop = frozenset(deployment.drop_params)
        self._cache_every_request = deployment.prompt_caching == "auto"
        self._counter = counter
        self._url = f"{deployment.base_url or DEFAULT_BASE_URL}/v1/messages"

    @staticmethod
    def _headers(ctx: CallContext) -> dict[str, str]:
        headers = ctx.upstream_headers()
        if ctx.dialect == "anthropic":  # the client's betas, for what its body asks
            headers.update(ctx.dialect_headers)
        return headers

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        request = chat_request(body, self._model, self._drop, self._cache_every_request)
        result = await self._client.request_json(
            "POST", self._url, self._patched(request.body), self._headers(ctx)
        )
        with self._shape_checked():
            return completion(result, self._model, request.json_tool, self._counter)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        request = chat_request(body, self._model, self._drop, self._cache_every_request)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        translator = StreamTranslator(self._model, include_usage, request.json_tool, self._counter)
        upstream = {**self._patched(request.body), "stream": True}
        events = self._client.stream_sse(self._url, upstream, self._headers(ctx))
        async with aclosing(events):  # closing at message_stop keeps the connection pooled
            async for event in events:
                parsed = self._event_object(event.data)
                if parsed.get("type") == "error":
                    raise self._stream_error(parsed)
                with self._shape_checked():
                    chunks = translator.feed(parsed)
                for chunk in chunks:
                    yield chunk
                if translator.finished:
                    return
        raise UpstreamProtocolError(
            "upstream stream ended before message_stop", deployment=self.deployment_id
        )

    def _stream_error(self, event: JSONDict) -> UpstreamStatusError:
        """An ``error`` event after the 200 status: the status Anthropic
        documents for its error type, its message made safe."""
        error = event.get("error")
        error = error if isinstance(error, dict) else {}
        kind = error.get("type")
        kind = kind if isinstance(kind, str) else "error"
        message = error.get("message")
        detail = f"{kind}: {message}" if isinstance(message, str) else kind
        return self._upstream_error(_ERROR_STATUSES.get(kind, 500), detail, mid_stream=True)
