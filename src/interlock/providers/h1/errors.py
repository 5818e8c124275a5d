"""The client's own errors; the caller maps them to its error model."""

from __future__ import annotations

__all__ = [
    "H1Broken",
    "H1ConnectError",
    "H1Error",
    "H1ProtocolError",
    "H1Timeout",
    "StaleConnection",
]


class H1Error(Exception):
    """Anything that went wrong talking to the upstream."""


class H1ConnectError(H1Error):
    """No connection could be made (refused, unreachable, DNS, TLS handshake,
    a proxy that refused the tunnel)."""


class H1Broken(H1Error):
    """The connection closed or reset before the response was complete."""


class H1ProtocolError(H1Error):
    """The upstream did not speak HTTP/1.1 (or broke a size bound)."""


class H1Timeout(H1Error):
    """Connecting, waiting for a pooled connection, a read or the whole call took too long."""


class StaleConnection(H1Broken):
    """A reused keep-alive connection the server had already closed."""
