"""The pooled upstream HTTP client every network adapter is given.

One ``UpstreamClient`` per deployment: a bounded pool of keep-alive
connections per origin (``interlock.providers.h1``) and timeouts on every
call. Foreign errors are classified into ``ProviderError`` subclasses here,
exactly once.

How a pool connects is decided once, when it is created for an origin: the
deployment's TLS context (``providers.tls``, built once per deployment) and
its proxy, if any (``providers.proxy_rules`` chooses, ``providers.proxy``
connects). Requests then cost the same whichever way the connection went.

The client is hand-written rather than aiohttp's: it costs a fraction of
aiohttp's CPU per request and far less than httpx's (the figures:
``bench/README.md``, "Upstream client cost"). The client sits on the hot path
of every call. ADR 0008 has the trade-off.
"""

from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson

from interlock.config import ConfigError, DeploymentConfig, TimeoutConfig, TlsConfig
from interlock.errors import (
    ProviderError,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext, JSONDict, Provider
from interlock.providers.body_patch import merge_patch
from interlock.providers.h1 import (
    ConnectionPool,
    H1Broken,
    H1ConnectError,
    H1Error,
    H1Timeout,
    Origin,
    Response,
    encode_head,
    header_block,
    split_url,
)
from interlock.providers.proxy import dialer_for, proxy_authorization, refusal
from interlock.providers.proxy_rules import ProxyRules
from interlock.providers.retry_after import retry_after_from_headers
from interlock.providers.tls import client_context
from interlock.providers.upstream_errors import ShapeError, clean_text, status_error
from interlock.redaction import Redactor

__all__ = ["HttpProvider", "SSEEvent", "UpstreamClient"]

# Longest single event accepted in a streamed upstream body.
_MAX_LINE_BYTES = 4 * 1024 * 1024
# Our own exception texts (connection, timeout, protocol) at most this long.
_MESSAGE_CHARS = 500
# How long a stream's consumer that stopped at the end marker waits for the
# body's end, to return the connection to the pool instead of closing it.
_END_GRACE_S = 0.1
# Parsed URLs kept per client (an adapter calls a handful of URLs).
_MAX_CACHED_URLS = 256

log = logging.getLogger("interlock.upstream")


@dataclass(frozen=True, slots=True)
class SSEEvent:
    event: str
    data: bytes


class UpstreamClient:
    """Bounded keep-alive pools to one deployment's upstream, with error classification.

    ``tls`` sets the certificate checks for https origins (default: the
    system's CAs); ``proxies`` which origins go through a proxy (default: none);
    ``redactor`` what the errors' messages must not show (default: key-shaped
    strings only).
    """

    def __init__(
        self,
        deployment_id: str,
        timeouts: TimeoutConfig,
        max_connections: int,
        headers: Mapping[str, str] | None = None,
        *,
        tls: TlsConfig | None = None,
        proxies: ProxyRules | None = None,
        redactor: Redactor | None = None,
    ):
        self.deployment_id = deployment_id
        self.redactor = redactor or Redactor()
        self._timeouts = timeouts
        self._max_connections = max_connections
        fixed = {
            "content-type": "application/json",
            **{k.lower(): v for k, v in (headers or {}).items()},
        }
        self._fixed_headers = fixed
        self._tls = tls or TlsConfig()
        self._ssl_context: ssl.SSLContext | None = None  # built with the first https pool
        self._proxies = proxies or ProxyRules()
        self._pools: dict[Origin, ConnectionPool] = {}
        # url -> origin, request target, the origin's fixed headers, those as a block
        self._urls: dict[str, tuple[Origin, str, dict[str, str], str]] = {}
        self._started = False

    async def start(self) -> None:
        self._started = True  # pools open lazily, per origin, in the running loop

    async def aclose(self) -> None:
        self._started = False
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()

    async def request_json(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> Any:
        """One unary JSON call; returns the parsed body (None for an empty
        one: Triton answers readiness with an empty 200) or raises a
        ProviderError. ``body`` already ``bytes`` is sent as it is (a signed
        request must send exactly the bytes it signed)."""
        data = _encoded(body) if body is not None else None
        timeouts = self._timeouts
        with self._classified():
            pool, head = self._prepare(method, url, headers, data)
            resp = await pool.request(head, data, timeouts.read_s, timeouts.total_s)
            try:
                raw = await resp.read()
            except BaseException:
                resp.close()
                raise
            if resp.status >= 400:
                raise self._status_error(resp, raw, pool.origin)
        if not raw:
            return None
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
        resp, origin = await self._open_stream(url, body, headers)
        try:
            with self._classified():
                if resp.status >= 400:
                    raise self._status_error(resp, await resp.read(), origin)
                async for event in _parse_sse(resp):
                    yield event
        except GeneratorExit:
            # The consumer stopped early: usually at its protocol's end marker
            # (``[DONE]``, ``message_stop``), a moment before the body ends.
            await _release_if_ending(resp)
            raise
        except BaseException:
            resp.close()
            raise

    async def stream_bytes(
        self, url: str, body: Any, headers: Mapping[str, str] | None = None
    ) -> AsyncGenerator[bytes, None]:
        """POST ``body`` and yield the response body's bytes as they arrive,
        for a framing that is not server-sent events (AWS event streams).
        Closing the iterator closes the connection, as ``stream_sse``'s does."""
        resp, origin = await self._open_stream(url, body, headers)
        try:
            with self._classified():
                if resp.status >= 400:
                    raise self._status_error(resp, await resp.read(), origin)
                while chunk := await resp.readany():
                    yield chunk
        except GeneratorExit:
            # The consumer stopped early: usually at its protocol's end marker
            # (``[DONE]``, ``message_stop``), a moment before the body ends.
            await _release_if_ending(resp)
            raise
        except BaseException:
            resp.close()
            raise

    async def fetch(
        self, url: str, *, max_bytes: int, headers: Mapping[str, str] | None = None
    ) -> tuple[str, bytes]:
        """GET ``url``: its content type and body, refused past ``max_bytes``
        (read as it arrives, so a huge body is never held whole)."""
        with self._classified():
            pool, head = self._prepare("GET", url, headers, None)
            resp = await pool.request(head, None, self._timeouts.read_s, self._timeouts.total_s)
            try:
                if resp.status >= 300:  # redirects are not followed: the allow-list names hosts
                    raise self._status_error(resp, await resp.read(), pool.origin)
                declared = resp.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise ValueError(f"body of {declared} bytes is over {max_bytes}")
                parts: list[bytes] = []
                size = 0
                while chunk := await resp.readany():
                    size += len(chunk)
                    if size > max_bytes:
                        raise ValueError(f"body is over {max_bytes} bytes")
                    parts.append(chunk)
            except BaseException:
                resp.close()
                raise
        return resp.headers.get("content-type", ""), b"".join(parts)

    async def _open_stream(
        self, url: str, body: Any, headers: Mapping[str, str] | None
    ) -> tuple[Response, Origin]:
        data = _encoded(body)
        with self._classified():
            pool, head = self._prepare("POST", url, headers, data)
            resp = await pool.request(head, data, self._timeouts.read_s)
        return resp, pool.origin

    def _prepare(
        self, method: str, url: str, headers: Mapping[str, str] | None, data: bytes | None
    ) -> tuple[ConnectionPool, bytes]:
        if not self._started:
            raise RuntimeError(f"upstream client for {self.deployment_id} used before start()")
        known = self._urls.get(url)
        if known is None:
            known = self._describe(url)
            if len(self._urls) < _MAX_CACHED_URLS:
                self._urls[url] = known
        origin, target, fixed, block = known
        if headers:
            extra = {k.lower(): v for k, v in headers.items()}
            if extra.keys() & fixed.keys():  # the call's own value wins
                block = header_block({**fixed, **extra})
            else:
                block += header_block(extra)
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = self._open_pool(origin)
        return pool, encode_head(method, target, block, None if data is None else len(data))

    def _describe(self, url: str) -> tuple[Origin, str, dict[str, str], str]:
        """What every request to ``url`` shares, worked out once per URL."""
        origin, target = split_url(url)
        fixed = {"host": origin.host_header, **self._fixed_headers}
        proxy = self._proxies.choose(origin)
        if proxy is not None and origin.scheme == "http":
            # An http request through a proxy names the whole URL (absolute
            # form) and carries the proxy's credentials; proxy.py says why
            # this is not a CONNECT tunnel.
            target = f"http://{origin.host_header}{target}"
            authorization = proxy_authorization(proxy)
            if authorization is not None:
                fixed["proxy-authorization"] = authorization
        return origin, target, fixed, header_block(fixed)

    def _open_pool(self, origin: Origin) -> ConnectionPool:
        proxy = self._proxies.choose(origin)
        if proxy is not None:
            log.info(
                "deployment %s: connections to %s go through proxy %s",
                self.deployment_id,
                origin.host_header,
                proxy,
            )
        context = None
        if origin.scheme == "https":
            if self._ssl_context is None:
                self._ssl_context = client_context(self._tls)
            context = self._ssl_context
        return ConnectionPool(
            origin,
            self._max_connections,
            self._timeouts.connect_s,
            dialer=dialer_for(origin, proxy, context),
        )

    def _status_error(self, resp: Response, body: bytes, origin: Origin) -> ProviderError:
        proxy = self._proxies.choose(origin) if resp.status == 407 else None
        if proxy is not None and origin.scheme == "http":
            # The forward proxy answered for the upstream: not the upstream's
            # status to pass on, but a connection that could not be made.
            what = f"the request to {origin.host_header}"
            message = refusal(proxy, what, 407, "Proxy Authentication Required")
            return UpstreamConnectionError(
                self._message(f"cannot reach upstream: {message}"), deployment=self.deployment_id
            )
        return status_error(
            resp.status,
            body,
            self.redactor,
            deployment=self.deployment_id,
            retry_after_s=_retry_after(resp),
        )

    @contextmanager
    def _classified(self) -> Iterator[None]:
        """Map foreign exceptions to ProviderErrors, once, here."""
        try:
            yield
        except ProviderError:
            raise
        except (TimeoutError, H1Timeout) as exc:
            raise UpstreamTimeout(
                self._message(f"upstream timed out: {exc or type(exc).__name__}"),
                deployment=self.deployment_id,
            ) from None
        except H1Broken as exc:
            raise UpstreamConnectionError(
                self._message(f"upstream connection broke: {exc}"), deployment=self.deployment_id
            ) from None
        except (H1ConnectError, OSError) as exc:
            raise UpstreamConnectionError(
                self._message(f"cannot reach upstream: {exc}"), deployment=self.deployment_id
            ) from None
        except (H1Error, ValueError) as exc:  # protocol errors, oversized events, bad headers
            raise UpstreamProtocolError(
                self._message(f"malformed upstream response: {exc}"), deployment=self.deployment_id
            ) from None

    def _message(self, text: str) -> str:
        """Exception texts can quote a URL (``?key=``) or bytes the upstream sent."""
        return clean_text(text, self.redactor, _MESSAGE_CHARS)


def _encoded(body: Any) -> bytes:
    return body if isinstance(body, bytes) else orjson.dumps(body)


def _retry_after(resp: Response) -> float | None:
    """The upstream's wait hint in seconds (the router rests the deployment)."""
    return retry_after_from_headers(resp.headers, now=time.time())


async def _release_if_ending(resp: Response) -> None:
    """Keep the connection for reuse if the body ends within a moment with no
    more data; otherwise (the consumer left mid-stream) close it at once."""
    ended = resp.complete
    if not ended:
        try:
            async with asyncio.timeout(_END_GRACE_S):
                ended = not await resp.readany()
        except (TimeoutError, H1Error):
            ended = False
    if not ended:
        resp.close()


async def _parse_sse(resp: Response) -> AsyncIterator[SSEEvent]:
    """Server-sent events per the WHATWG spec: ``event:``/``data:`` lines, a
    blank line ends an event; ``\n`` or ``\r\n`` line ends.

    Reads whatever arrived and splits it, rather than awaiting line by line:
    one await per network read instead of two per event, on the path every
    streamed token takes.
    """
    pending = b""
    while chunk := await resp.readany():
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

    bounds_call_time = True  # request_json passes total_s to the connection's deadline

    def __init__(
        self,
        deployment: DeploymentConfig,
        headers: Mapping[str, str],
        redactor: Redactor | None = None,
    ):
        """Reads the proxy variables from the environment now, once (at start).
        ``redactor``: the gateway's; by default, one for this deployment's secrets."""
        self.deployment_id = deployment.id
        self._patch = deployment.body_patch
        try:
            proxies = ProxyRules.for_deployment(deployment, os.environ)
        except ValueError as exc:
            raise ConfigError(f"deployment {deployment.id}: {exc}") from None
        if not deployment.tls.verify:
            log.warning(
                "deployment %s: tls.verify is false: the upstream's certificate is not "
                "checked, so anyone on the network path can read and change the traffic",
                deployment.id,
            )
        self._client = UpstreamClient(
            deployment.id,
            deployment.timeouts,
            deployment.max_connections,
            headers,
            tls=deployment.tls,
            proxies=proxies,
            redactor=redactor or Redactor.for_deployment(deployment, os.environ),
        )

    async def start(self) -> None:
        await self._client.start()

    async def aclose(self) -> None:
        await self._client.aclose()

    def _patched(self, body: JSONDict) -> JSONDict:
        """A chat request's body as it goes, with the operator's ``body_patch``
        (``body_patch.py``) applied last: the operator's word is final."""
        return merge_patch(body, self._patch) if self._patch else body

    @staticmethod
    def _headers(ctx: CallContext) -> dict[str, str]:
        return ctx.upstream_headers()

    @contextmanager
    def _shape_checked(self) -> Iterator[None]:
        """A translation module's ``ShapeError`` as this deployment's
        ``UpstreamProtocolError``."""
        try:
            yield
        except ShapeError as exc:
            raise UpstreamProtocolError(str(exc), deployment=self.deployment_id) from None

    def _event_object(self, data: bytes) -> dict[str, Any]:
        """One streamed event's JSON object, or an ``UpstreamProtocolError``."""
        try:
            parsed = orjson.loads(data)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise UpstreamProtocolError(
                "upstream sent a stream event that is not a JSON object",
                deployment=self.deployment_id,
            )
        return parsed

    def _upstream_error(
        self, status: int, detail: str | bytes, *, mid_stream: bool = False
    ) -> UpstreamStatusError:
        """An error status or error event from the upstream, its words made safe."""
        return status_error(
            status,
            detail,
            self._client.redactor,
            deployment=self.deployment_id,
            mid_stream=mid_stream,
        )
