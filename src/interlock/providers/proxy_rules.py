"""Which HTTP proxy, if any, a deployment's connections to an origin go through.

A pure policy, decided once per origin when its pool is created: the
deployment's own ``proxy`` if set; otherwise, with ``trust_env``, the
environment's variables, read the way curl and requests read them:

- ``https_proxy`` for https origins, ``http_proxy`` for http ones; each name
  lower or upper case, the lower-case one winning when both are set (curl
  reads only ``http_proxy`` in lower case; requests, httpx and Go read both).
  An empty value means no proxy. ``ALL_PROXY`` is not read: it
  is often a SOCKS proxy, which this client does not speak.
- ``no_proxy``: hosts reached directly, comma-separated, case-insensitive:
  a ``*`` entry matches every host; a name matches itself and its subdomains
  (``example.com`` and ``.example.com`` both match ``example.com`` and
  ``api.example.com``, not ``notexample.com``: curl's rule; requests and httpx
  skip the bare name for ``.example.com``; ``*.example.com`` reads as
  ``.example.com``); an IP address or a CIDR range
  (``10.0.0.0/8``, ``::1``, ``[::1]``) matches addresses (curl >= 7.86, Go,
  requests); any entry may end in ``:port`` to match that port only (Go,
  requests). Names are compared as written: nothing is resolved.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from interlock.config import DeploymentConfig, ProxyURL
from interlock.providers.h1 import Origin

__all__ = ["NoProxy", "ProxyRules"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyRules:
    """The deployment's proxy, or the environment's with its exceptions."""

    def __init__(self, explicit: ProxyURL | None = None, env: Mapping[str, str] | None = None):
        """``env`` None: the environment is not consulted (``trust_env: false``).
        Raises ValueError naming the variable if a proxy variable is unusable."""
        self._explicit = explicit
        self._by_scheme: dict[str, ProxyURL] = {}
        self._no_proxy = NoProxy("")
        if explicit is None and env is not None:
            for scheme in ("http", "https"):
                name, value = _variable(env, f"{scheme}_proxy")
                if value:
                    try:
                        self._by_scheme[scheme] = ProxyURL.parse(value)
                    except ValueError as exc:
                        raise ValueError(f"environment variable {name}: {exc}") from None
            self._no_proxy = NoProxy(_variable(env, "no_proxy")[1])

    @classmethod
    def for_deployment(cls, deployment: DeploymentConfig, environ: Mapping[str, str]) -> ProxyRules:
        return cls(deployment.proxy, environ if deployment.trust_env else None)

    def choose(self, origin: Origin) -> ProxyURL | None:
        if self._explicit is not None:
            return self._explicit
        proxy = self._by_scheme.get(origin.scheme)
        if proxy is None or self._no_proxy.matches(origin.host, origin.port):
            return None
        return proxy


def _variable(env: Mapping[str, str], lower: str) -> tuple[str, str]:
    """``(name, value)`` of the lower- or else upper-case variable. A lower-case
    one set to "" still wins, so it can switch off an inherited upper-case one
    (as in requests)."""
    for name in (lower, lower.upper()):
        if name in env:
            return name, env[name].strip()
    return lower, ""


@dataclass(frozen=True, slots=True)
class _Entry:
    name: str | None  # a host name, no leading dot
    network: _Network | None  # or an address range
    port: int | None  # None: any port


class NoProxy:
    """The hosts a ``no_proxy`` value sends direct; see the module docstring."""

    def __init__(self, value: str):
        tokens = [t.strip().lower() for t in value.split(",")]
        self.everything = "*" in tokens
        self._entries = [entry for t in tokens if t and (entry := _parse_entry(t)) is not None]

    def matches(self, host: str, port: int) -> bool:
        if self.everything:
            return True
        host = host.lower().rstrip(".")
        address = _address(host)
        for entry in self._entries:
            if entry.port is not None and entry.port != port:
                continue
            if address is not None:
                if entry.network is not None and address in entry.network:
                    return True
            elif entry.name is not None and (host == entry.name or host.endswith("." + entry.name)):
                return True
        return False


def _parse_entry(token: str) -> _Entry | None:
    port: int | None = None
    host = token
    if host.startswith("["):  # [v6] or [v6]:port
        host, _, rest = host[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
    elif host.count(":") == 1:  # name:port or v4:port (a bare v6 has several colons)
        host, _, after = host.partition(":")
        if not after.isdigit():
            return None  # not a form anyone documents: ignored, as curl does
        port = int(after)
    try:
        return _Entry(None, ipaddress.ip_network(host, strict=False), port)
    except ValueError:
        pass
    name = host.lstrip(".").removeprefix("*.").rstrip(".")
    return _Entry(name, None, port) if name and "/" not in name else None


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None
