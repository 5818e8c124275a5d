"""The pooled upstream HTTP client every network adapter is given.

One ``UpstreamClient`` per deployment: one aiohttp session with a bounded,
keep-alive connection pool and timeouts on every call. Foreign exceptions are
classified into ``ProviderError`` subclasses here, exactly once.

aiohttp rather than httpx: at concurrency 32 its client costs about 70 µs of
CPU per request against httpx's ~1,200 µs on the same machine
(``bench/clients.py``), and the client sits on the hot path of every call.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from interlock.config import DeploymentConfig, TimeoutConfig
from interlock.errors import (
    ProviderError,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext, Provider

__all__ = ["HttpProvider", "SSEEvent", "UpstreamClient", "upstream_error_message"]

# Longest single line accepted in a streamed upstream body.
_MAX_LINE_BYTES = 4 * 1024 * 1024
_ERROR_BODY_PREVIEW = 500
# How long a stream's consumer that stopped at the end marker waits for the
# body's end, to return the connection to the pool instead of closing it.
_END_GRACE_S = 0.1


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: bytes


def upstream_error_message(body: bytes) -> str:
    """Best-effort human message from an upstream error body of any shape."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body[:_ERROR_BODY_PREVIEW].decode("utf-8", "replace").strip()
        return text or "(empty body)"
    if isinstance(parsed, list) and parsed:
        parsed = parsed[0]  # Gemini sometimes wraps errors in a list
    if isinstance(parsed, dict):
        error = parsed.get("error", parsed)
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])
    return body[:_ERROR_BODY_PREVIEW].decode("utf-8", "replace")


class UpstreamClient:
    """A bounded keep-alive pool to one upstream, with error classification."""

    def __init__(
        self,
        deployment_id: str,
        timeouts: TimeoutConfig,
        max_connections: int,
        headers: Mapping[str, str] | None = None,
    ):
        self.deployment_id = deployment_id
        self._headers = {"content-type": "application/json", **(headers or {})}
        self._max_connections = max_connections
        self._unary_timeout = aiohttp.ClientTimeout(
            total=timeouts.total_s, connect=timeouts.connect_s, sock_read=timeouts.read_s
        )
        self._stream_timeout = aiohttp.ClientTimeout(
            total=None, connect=timeouts.connect_s, sock_read=timeouts.read_s
        )
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections, keepalive_timeout=30, ttl_dns_cache=300
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=self._unary_timeout,
            read_bufsize=2**16,
            max_line_size=_MAX_LINE_BYTES,
            max_field_size=_MAX_LINE_BYTES,
            auto_decompress=True,
            skip_auto_headers=("User-Agent",),
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError(f"upstream client for {self.deployment_id} used before start()")
        return self._session

    async def request_json(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One unary JSON call; returns the parsed body or raises a ProviderError."""
        data = orjson.dumps(body) if body is not None else None
        with self._classified():
            async with self.session.request(method, url, data=data, headers=headers) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise UpstreamStatusError(
                        resp.status,
                        upstream_error_message(raw),
                        deployment=self.deployment_id,
                        retry_after_s=_retry_after(resp),
                    )
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            raise UpstreamProtocolError(
                "upstream returned a body that is not JSON", deployment=self.deployment_id
            ) from None

    async def stream_sse(
        self, url: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[SSEEvent, None]:
        """POST ``body`` and yield the server-sent events of the response.

        Closing or cancelling the iterator closes the upstream connection, so
        the upstream sees the disconnect at once.
        """
        data = orjson.dumps(body)
        with self._classified():
            resp = await self.session.post(
                url, data=data, headers=headers, timeout=self._stream_timeout
            )
        try:
            with self._classified():
                if resp.status >= 400:
                    raw = await resp.read()
                    raise UpstreamStatusError(
                        resp.status,
                        upstream_error_message(raw),
                        deployment=self.deployment_id,
                        retry_after_s=_retry_after(resp),
                    )
                async for event in _parse_sse(resp.content):
                    yield event
        except GeneratorExit:
            # The consumer stopped early: usually at its protocol's end marker
            # (``[DONE]``, ``message_stop``), a moment before the body ends.
            await _release_if_ending(resp)
            raise
        except BaseException:
            resp.close()
            raise
        resp.release()

    @contextmanager
    def _classified(self) -> Any:
        """Map foreign exceptions to ProviderErrors, once, here."""
        try:
            yield
        except ProviderError:
            raise
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise UpstreamTimeout(
                f"upstream timed out ({type(exc).__name__})", deployment=self.deployment_id
            ) from None
        except aiohttp.ClientPayloadError as exc:
            raise UpstreamConnectionError(
                f"upstream connection broke mid-response: {exc}", deployment=self.deployment_id
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamConnectionError(
                f"cannot reach upstream: {type(exc).__name__}: {exc}",
                deployment=self.deployment_id,
            ) from None
        except ValueError as exc:  # aiohttp: line over max_line_size
            raise UpstreamProtocolError(
                f"malformed upstream stream: {exc}", deployment=self.deployment_id
            ) from None


def _retry_after(resp: aiohttp.ClientResponse) -> float | None:
    """``Retry-After`` in delta-seconds (the form model APIs send), else None."""
    value = resp.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


async def _release_if_ending(resp: aiohttp.ClientResponse) -> None:
    """Keep the connection for reuse if the body ends within a moment with no
    more data; otherwise (the consumer left mid-stream) close it at once."""
    ended = resp.content.is_eof()
    if not ended:
        try:
            async with asyncio.timeout(_END_GRACE_S):
                ended = not await resp.content.readany() and resp.content.is_eof()
        except (TimeoutError, aiohttp.ClientError, OSError):
            ended = False
    if ended:
        resp.release()
    else:
        resp.close()


async def _parse_sse(content: aiohttp.StreamReader) -> AsyncIterator[SSEEvent]:
    """Server-sent events per the WHATWG spec: ``event:``/``data:`` lines, a
    blank line ends an event; ``\n`` or ``\r\n`` line ends.

    Reads whatever arrived and splits it, rather than awaiting line by line:
    one await per network read instead of two per event, on the path every
    streamed token takes.
    """
    pending = b""
    while chunk := await content.readany():
        pending += chunk
        if b"\r\n" in pending:
            pending = pending.replace(b"\r\n", b"\n")  # a lone trailing \r waits for its \n
        *blocks, pending = pending.split(b"\n\n")
        if len(pending) > _MAX_LINE_BYTES:
            raise ValueError(f"stream event over {_MAX_LINE_BYTES} bytes")
        for block in blocks:
            event = _parse_event(block)
            if event is not None:
                yield event
    event = _parse_event(pending.rstrip(b"\r\n"))
    if event is not None:
        yield event


def _parse_event(block: bytes) -> SSEEvent | None:
    name = ""
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(b" ") else value)
        elif line.startswith(b"event:"):
            name = line[6:].strip().decode("utf-8", "replace")
        # ``id:``, ``retry:`` and ``:`` comments carry nothing we use.
    return SSEEvent(name or "message", b"\n".join(data)) if data else None


class HttpProvider(Provider):
    """Base for network adapters: owns the deployment's pooled client."""

    def __init__(self, deployment: DeploymentConfig, headers: Mapping[str, str]):
        self.deployment_id = deployment.id
        self._client = UpstreamClient(
            deployment.id, deployment.timeouts, deployment.max_connections, headers
        )

    async def start(self) -> None:
        await self._client.start()

    async def aclose(self) -> None:
        await self._client.aclose()

    @staticmethod
    def _headers(ctx: CallContext) -> dict[str, str]:
        return ctx.upstream_headers()
