"""A lean HTTP/1.1 client for upstream calls: a keep-alive pool over asyncio
protocols, with httptools (the parser uvicorn uses) reading responses.

Written by hand because the upstream call is on the path of every request and
aiohttp's client spends several times this one's CPU per call (the figures:
``bench/README.md``, "Upstream client cost") on features an upstream call
never uses (cookies, redirects, multipart, hooks). This does what the adapters
need and nothing else: HTTP/1.1 over TCP or TLS; content-length, chunked and
read-until-close bodies; gzip/deflate if a server compresses anyway; a bounded
pool of keep-alive connections; and a timeout on connecting, on waiting for a
pooled connection, on every read, and on the whole call.

A pool opens its connections through a ``Dialer``: ``TcpDialer`` (TCP, TLS
when given a context) unless the caller passes another, such as the proxy
tunnel in ``interlock.providers.proxy``. Once open, every connection is the
same to the pool.

Errors are this package's own (``H1Error`` and subclasses); the caller maps
them to its error model.
"""

from interlock.providers.h1.errors import (
    H1Broken,
    H1ConnectError,
    H1Error,
    H1ProtocolError,
    H1Timeout,
)
from interlock.providers.h1.pool import ConnectionPool, Dialer, TcpDialer
from interlock.providers.h1.response import Response
from interlock.providers.h1.wire import Origin, encode_head, header_block, split_url

__all__ = [
    "ConnectionPool",
    "Dialer",
    "H1Broken",
    "H1ConnectError",
    "H1Error",
    "H1ProtocolError",
    "H1Timeout",
    "Origin",
    "Response",
    "TcpDialer",
    "encode_head",
    "header_block",
    "split_url",
]
