"""Adapter for AWS Bedrock's Converse API (``POST /model/{modelId}/converse``
and ``/converse-stream``).

Translated (``bedrock_wire`` the request, ``bedrock_answer`` the answer,
``bedrock_stream`` the stream, all without I/O): system and developer
messages into ``system``; user and assistant text, user images (``data:``
URLs, and ``https:`` URLs from the hosts in ``fetch_images_from``, fetched
and inlined: Bedrock takes no URLs); assistant tool calls into ``toolUse``
blocks and ``tool`` messages into ``toolResult`` blocks (a JSON-object
result as ``json``), with turns merged so user and assistant alternate;
``max_tokens``/``max_completion_tokens``, ``temperature``, ``top_p`` and
``stop`` into ``inferenceConfig``; function tools and ``tool_choice`` into
``toolConfig``; ``response_format`` ``json_object``/``json_schema`` as a
forced tool whose input is returned as the message content;
``reasoning_effort`` as Claude's extended thinking (``reasoning_content``
and ``thinking_blocks`` in answers, a ``thinking_blocks`` delta when a
reasoning block ends in a stream; an assistant message's ``thinking_blocks``
go back first in its turn as ``reasoningContent``, signed or redacted, as
Claude needs them in tool loops); ``cache_control`` markers on messages,
parts and tools as ``cachePoint`` blocks; usage with cache reads and
writes, and with a ``counter`` an estimate of the reasoning tokens
(Converse counts them only as output tokens).

Refused with a 400 naming the parameter: any other parameter that changes
the answer (``n`` > 1, ``logprobs``, ``seed``, ...) unless the deployment
drops it (``drop_params``), non-text parts other than user images,
``tool_choice: none`` once the history holds tool blocks (Converse has no
``none``), image URLs from hosts not allowed, and ``thinking_blocks``
entries other than a ``thinking`` block with its text or a
``redacted_thinking`` block with base64 ``data``.

Every request is signed with botocore's SigV4 signer over the exact bytes
sent; the stream's binary event-stream frames are decoded by botocore's
decoder. An exception frame in the stream becomes the error its HTTP status
would have been (``throttlingException`` 429, ``serviceUnavailableException``
503, ...).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any
from urllib.parse import quote

import orjson

from interlock.config import AwsConfig, ConfigError, DeploymentConfig
from interlock.errors import UpstreamConnectionError, UpstreamProtocolError
from interlock.providers.base import CallContext, JSONDict
from interlock.providers.bedrock_answer import completion
from interlock.providers.bedrock_stream import ChunkStream
from interlock.providers.bedrock_wire import SUPPORTED, Converse, converse_request
from interlock.providers.http import HttpProvider
from interlock.providers.image_fetch import ImageInliner
from interlock.providers.openai_request import checked_params
from interlock.providers.upstream_errors import error_detail
from interlock.redaction import Redactor
from interlock.tokens import TokenCounter

__all__ = ["BedrockProvider", "SigV4Signer"]

# The HTTP status Bedrock documents for each exception a stream can end with.
EXCEPTION_STATUSES = {
    "validationException": 400,
    "throttlingException": 429,
    "modelStreamErrorException": 424,
    "internalServerException": 500,
    "serviceUnavailableException": 503,
}
_INSTALL = "pip install 'interlock[bedrock]'"


class SigV4Signer:
    """Signs Bedrock requests with botocore's SigV4 signer.

    Credentials are the deployment's keys or, without them, botocore's own
    chain (environment, shared files, instance or pod role), resolved once in
    ``start``. Refreshable ones (roles) are frozen per request, refreshed in
    a thread when they near expiry, since a refresh is a network call.
    """

    def __init__(self, deployment_id: str, aws: AwsConfig):
        if importlib.util.find_spec("botocore") is None:
            raise ConfigError(f"deployment {deployment_id}: provider 'bedrock' needs {_INSTALL}")
        self._deployment_id = deployment_id
        self._aws = aws
        self._credentials: Any = None

    async def start(self) -> None:
        from botocore.credentials import Credentials  # type: ignore[import-untyped]
        from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]

        aws = self._aws
        if aws.access_key_id is not None and aws.secret_access_key is not None:
            token = aws.session_token.reveal() if aws.session_token is not None else None
            self._credentials = Credentials(
                aws.access_key_id.reveal(), aws.secret_access_key.reveal(), token
            )
        else:
            try:
                self._credentials = await asyncio.to_thread(_default_chain)
            except BotoCoreError as exc:  # a named profile that does not exist, ...
                raise ConfigError(f"deployment {self._deployment_id}: {exc}") from None
        if self._credentials is None:
            raise ConfigError(
                f"deployment {self._deployment_id}: no AWS credentials: set aws.access_key_id "
                "and aws.secret_access_key, or give botocore's chain some (environment, "
                "shared files, instance or pod role)"
            )

    async def headers(self, url: str, body: bytes) -> dict[str, str]:
        """The signature headers for a POST of ``body`` to ``url``."""
        from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]
        from botocore.exceptions import BotoCoreError

        if self._credentials is None:
            raise RuntimeError(f"bedrock signer for {self._deployment_id} used before start()")
        try:
            if getattr(self._credentials, "refresh_needed", lambda: False)():
                frozen = await asyncio.to_thread(self._credentials.get_frozen_credentials)
            else:
                frozen = self._credentials.get_frozen_credentials()
        except BotoCoreError as exc:  # the role's credentials could not be refreshed
            raise UpstreamConnectionError(
                f"cannot refresh the AWS credentials: {exc}", deployment=self._deployment_id
            ) from None
        # The upstream client sends this content type; what is signed must match it.
        request = AWSRequest("POST", url, data=body, headers={"content-type": "application/json"})
        SigV4Auth(frozen, "bedrock", self._aws.region).add_auth(request)
        return {
            name.lower(): value
            for name, value in request.headers.items()
            if name.lower() != "content-type"  # the client adds it
        }


class _Frames:
    """botocore's event-stream decoder, its errors ours."""

    def __init__(self, deployment_id: str):
        from botocore.eventstream import (  # type: ignore[import-untyped]
            EventStreamBuffer,
            ParserError,
        )

        self._deployment_id = deployment_id
        self._buffer = EventStreamBuffer()
        self._error: type[Exception] = ParserError

    def feed(self, data: bytes) -> list[tuple[dict[str, Any], bytes]]:
        """Each frame ``data`` completes, as (headers, payload)."""
        self._buffer.add_data(data)
        try:
            return [(message.headers, message.payload) for message in self._buffer]
        except self._error as exc:
            raise UpstreamProtocolError(
                f"malformed upstream event stream: {exc}", deployment=self._deployment_id
            ) from None


def _default_chain() -> Any:
    from botocore.session import Session  # type: ignore[import-untyped]

    return Session().get_credentials()


class BedrockProvider(HttpProvider):
    provider_name = "aws.bedrock"
    limits_parallel_calls = False

    def __init__(
        self,
        deployment: DeploymentConfig,
        redactor: Redactor | None = None,
        counter: TokenCounter | None = None,
    ):
        """``counter`` estimates reasoning tokens, which Converse does not report."""
        assert deployment.model and deployment.aws  # guaranteed by config validation
        self._signer = SigV4Signer(deployment.id, deployment.aws)
        super().__init__(deployment, {}, redactor)
        self._model = deployment.model
        self._counter = counter
        endpoint = (
            deployment.base_url or f"https://bedrock-runtime.{deployment.aws.region}.amazonaws.com"
        )
        # A model id holds ':' and an ARN '/': one path segment, percent-encoded.
        model_url = f"{endpoint}/model/{quote(deployment.model, safe='')}"
        self._converse_url = f"{model_url}/converse"
        self._stream_url = f"{model_url}/converse-stream"
        self._drop = frozenset(deployment.drop_params)
        self._images = ImageInliner(deployment, "bedrock")

    async def start(self) -> None:
        await self._signer.start()
        await self._images.start()
        await super().start()

    async def aclose(self) -> None:
        await self._images.aclose()
        await super().aclose()

    async def chat(self, body: JSONDict, ctx: CallContext) -> JSONDict:
        request = await self._request(body)
        data = orjson.dumps(self._patched(request.body))
        headers = await self._headers_for(self._converse_url, data, ctx)
        response = await self._client.request_json("POST", self._converse_url, data, headers)
        with self._shape_checked():
            return completion(response, self._model, request.json_tool, self._counter)

    async def stream_chat(self, body: JSONDict, ctx: CallContext) -> AsyncIterator[bytes]:
        request = await self._request(body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        chunks = ChunkStream(self._model, request.json_tool, include_usage, self._counter)
        data = orjson.dumps(self._patched(request.body))
        headers = await self._headers_for(self._stream_url, data, ctx)
        frames = _Frames(self.deployment_id)
        received = self._client.stream_bytes(self._stream_url, data, headers)
        async with aclosing(received):  # closing at the end keeps the connection pooled
            async for piece in received:
                for frame_headers, payload in frames.feed(piece):
                    kind, event = self._event(frame_headers, payload)
                    with self._shape_checked():
                        out = chunks.feed(kind, event)
                    for chunk in out:
                        yield chunk
                    if chunks.finished:
                        return
        with self._shape_checked():
            out = chunks.close()
        for chunk in out:
            yield chunk

    async def _request(self, body: JSONDict) -> Converse:
        body = checked_params(body, "bedrock", SUPPORTED, self._drop)
        body = await self._images.inline(body)
        return converse_request(body)

    async def _headers_for(self, url: str, data: bytes, ctx: CallContext) -> dict[str, str]:
        return {**await self._signer.headers(url, data), **self._headers(ctx)}

    def _event(self, headers: dict[str, Any], payload: bytes) -> tuple[str, JSONDict]:
        """A frame's event type and JSON payload; an exception frame raises
        the error it stands for."""
        kind = headers.get(":message-type")
        if kind == "exception":
            raise self._exception(str(headers.get(":exception-type")), payload)
        if kind == "error":
            detail = f"{headers.get(':error-code')}: {headers.get(':error-message')}"
            raise self._upstream_error(500, detail, mid_stream=True)
        return str(headers.get(":event-type")), self._event_object(payload)

    def _exception(self, kind: str, payload: bytes) -> Exception:
        status = EXCEPTION_STATUSES.get(kind, 500)
        detail = error_detail(payload)
        return self._upstream_error(
            status, f"{kind}: {detail}" if detail else kind, mid_stream=True
        )
