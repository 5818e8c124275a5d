"""The address a request came from, through the proxies the operator trusts.

Behind a load balancer every connection comes from the balancer; the
client's own address is in ``X-Forwarded-For``, which anyone can also send.
Only the hops the operator names (``search.anonymous.trusted_proxies``, addresses or
networks) are believed: the header is read from the right, each trusted hop
skipped, and the first address that is not a trusted proxy is the client.
With no trusted proxies, or a peer that is not one, the peer is the client.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

__all__ = ["ClientAddress"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ClientAddress:
    def __init__(self, trusted_proxies: Iterable[str] = ()):
        self._trusted: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies
        )

    def resolve(self, peer: str | None, forwarded_for: str | None) -> str | None:
        if not self._trusted or peer is None or not self._is_trusted(peer):
            return peer
        if not forwarded_for:
            return peer
        for hop in reversed(forwarded_for.split(",")):
            hop = hop.strip()
            try:
                ipaddress.ip_address(hop)
            except ValueError:
                return peer  # a hop that is no address: nothing left of it can be believed
            if not self._is_trusted(hop):
                return hop
        return peer  # every hop a trusted proxy

    def _is_trusted(self, address: str) -> bool:
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in self._trusted)
