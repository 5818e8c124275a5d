"""Connecting to an origin directly or through an HTTP proxy: the pool's dialers.

https origins through a proxy: ``CONNECT host:port`` to the proxy, then TLS
with the upstream over that tunnel (SNI and the certificate check use the
upstream's name, not the proxy's; the proxy, not this process, resolves the
name). The pool then treats the connection like any other: one tunnel carries
request after request while it stays alive.

http origins through a proxy: a plain connection to the proxy and requests in
absolute form (``POST http://host:port/path``, which ``UpstreamClient``
writes) rather than CONNECT. It is what curl, requests and httpx do, and
proxies commonly allow CONNECT to port 443 only (squid's default
``http_access deny CONNECT !SSL_ports``) while internal http model servers
listen on 8000 and the like.

Every step runs inside the pool's connect timeout. Errors name the proxy as
``http://host:port``, never with its credentials.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import Callable
from typing import TypeVar

from interlock.config import ProxyURL
from interlock.providers.h1 import Dialer, H1ConnectError, Origin, TcpDialer

__all__ = ["TunnelDialer", "dialer_for", "proxy_authorization", "refusal"]

_P = TypeVar("_P", bound=asyncio.BaseProtocol)
# A proxy's reply to CONNECT is a status line and a few headers.
_MAX_REPLY_BYTES = 64 * 1024


def dialer_for(
    origin: Origin, proxy: ProxyURL | None, ssl_context: ssl.SSLContext | None = None
) -> Dialer:
    """How a pool for ``origin`` opens its connections. ``ssl_context`` serves
    https origins (default: the system's CAs); http ones ignore it."""
    if origin.scheme == "http":
        if proxy is None:
            return TcpDialer(origin.host, origin.port)
        return TcpDialer(proxy.host, proxy.port, where=f"proxy {proxy} (for {_authority(origin)})")
    ssl_context = ssl_context or ssl.create_default_context()
    if proxy is None:
        return TcpDialer(origin.host, origin.port, ssl_context)
    return TunnelDialer(proxy, origin, ssl_context)


def proxy_authorization(proxy: ProxyURL) -> str | None:
    """The ``Proxy-Authorization`` value (Basic) for the URL's credentials, if any."""
    if not proxy.username and not proxy.password:
        return None
    token = base64.b64encode(f"{proxy.username}:{proxy.password}".encode()).decode("ascii")
    return f"Basic {token}"


def refusal(proxy: ProxyURL, what: str, status: int, reason: str) -> str:
    """Why ``proxy`` refused ``what``, with a hint for 407 (authentication)."""
    reason = "".join(c for c in reason[:100] if c.isprintable())
    message = f"proxy {proxy} refused {what}: {status} {reason}".rstrip()
    if status != 407:
        return message
    if proxy.username or proxy.password:
        return f"{message} (it did not accept the credentials in the proxy URL)"
    return f"{message} (it wants credentials: http://user:password@host:port as the proxy URL)"


class TunnelDialer:
    """TLS to ``origin`` inside a CONNECT tunnel through ``proxy``."""

    def __init__(self, proxy: ProxyURL, origin: Origin, ssl_context: ssl.SSLContext):
        authority = _authority(origin)
        self.where = f"{authority} through proxy {proxy}"
        self._proxy = proxy
        self._authority = authority
        self._server_hostname = origin.host
        self._ssl = ssl_context
        lines = [f"CONNECT {authority} HTTP/1.1", f"host: {authority}"]
        authorization = proxy_authorization(proxy)
        if authorization is not None:
            lines.append(f"proxy-authorization: {authorization}")
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def open(self, factory: Callable[[], _P]) -> tuple[asyncio.BaseTransport, _P]:
        loop = asyncio.get_running_loop()
        try:
            raw, reply = await loop.create_connection(
                lambda: _ConnectReply(self._proxy), self._proxy.host, self._proxy.port
            )
        except OSError as exc:
            raise H1ConnectError(
                f"cannot connect to proxy {self._proxy}: {type(exc).__name__}: {exc}"
            ) from None
        try:
            raw.write(self._request)
            self._check(*await reply.head)
            protocol = factory()
            transport = await loop.start_tls(
                raw, protocol, self._ssl, server_hostname=self._server_hostname
            )
            if transport is None:  # typeshed allows it; no loop returns it for a client
                raise H1ConnectError(f"TLS over the tunnel to {self.where} did not start")
        except BaseException:
            raw.abort()
            raise
        protocol.connection_made(transport)  # start_tls does not call it
        return transport, protocol

    def _check(self, head: bytes, extra: bytes) -> None:
        """Accept a 2xx reply; anything else says why the proxy refused."""
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or not (len(code) == 3 and code.isdigit()):
            raise H1ConnectError(
                f"proxy {self._proxy} sent no HTTP reply to CONNECT {self._authority}"
            )
        status = int(code)
        if 200 <= status < 300:
            if extra:  # TLS: the upstream speaks only after our hello
                raise H1ConnectError(
                    f"proxy {self._proxy} sent data after accepting CONNECT {self._authority}"
                )
            return
        raise H1ConnectError(refusal(self._proxy, f"CONNECT {self._authority}", status, reason))


class _ConnectReply(asyncio.Protocol):
    """Reads the proxy's reply head to CONNECT; then TLS takes the connection over."""

    def __init__(self, proxy: ProxyURL) -> None:
        self._proxy = proxy
        # (reply head, any bytes after it in the same read)
        self.head: asyncio.Future[tuple[bytes, bytes]] = asyncio.get_running_loop().create_future()
        self._buffer = bytearray()

    def data_received(self, data: bytes) -> None:
        if self.head.done():
            return  # the dialer has what it needs, or has given up
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end >= 0:
            self.head.set_result((bytes(self._buffer[:end]), bytes(self._buffer[end + 4 :])))
        elif len(self._buffer) > _MAX_REPLY_BYTES:
            self.head.set_exception(
                H1ConnectError(
                    f"proxy {self._proxy}: reply to CONNECT over {_MAX_REPLY_BYTES} bytes"
                )
            )

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            cause = f": {type(exc).__name__}: {exc}" if exc is not None else ""
            self.head.set_exception(
                H1ConnectError(f"proxy {self._proxy} closed the connection before replying{cause}")
            )


def _authority(origin: Origin) -> str:
    host = f"[{origin.host}]" if ":" in origin.host else origin.host
    return f"{host}:{origin.port}"
