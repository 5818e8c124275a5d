"""How many connections the server keeps open: in all, and from one address.

A pure policy: the HTTP protocol (``api/protocol.py``) reports each
connection as it opens and closes, and asks whether the new one is over a
cap. A connection over a cap is not dropped unread: its request is answered
with the refusal (503, or 429 from one address) and then closed, so the
client learns why; ``header_timeout_s`` bounds how long it can take to send
that request.
"""

from __future__ import annotations

from interlock.errors import InterlockError, Overloaded, TooManyRequests

__all__ = ["ConnectionCaps"]


class ConnectionCaps:
    def __init__(self, max_total: int, max_per_client: int | None = None):
        self.max_total = max_total
        self.max_per_client = max_per_client
        self.total = 0
        # Open connections per client address, only while the per-address
        # cap is on; an address leaves the table with its last connection.
        self.per_client: dict[str, int] = {}

    def open(self, client: str | None) -> InterlockError | None:
        """Count a new connection from ``client`` (None: not an IP peer, a
        Unix socket); the refusal to answer it with, if it is over a cap."""
        self.total += 1
        if self.max_per_client is not None and client is not None:
            count = self.per_client.get(client, 0) + 1
            self.per_client[client] = count
            if count > self.max_per_client:
                return TooManyRequests(
                    f"Too many open connections from your address (the limit is "
                    f"{self.max_per_client}); reuse a connection, or retry when one closes.",
                    code="too_many_connections",
                    retry_after_s=1,
                )
        if self.total > self.max_total:
            return Overloaded(
                "The server has too many open connections; retry shortly.", retry_after_s=1
            )
        return None

    def close(self, client: str | None) -> None:
        """A connection that ``open`` counted has closed."""
        self.total -= 1
        if self.max_per_client is not None and client is not None:
            count = self.per_client[client] - 1
            if count:
                self.per_client[client] = count
            else:
                del self.per_client[client]
