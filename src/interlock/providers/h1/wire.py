"""What goes on the wire: origins, request targets, the request head."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Origin", "encode_head", "header_block", "split_url"]


@dataclass(frozen=True, slots=True)
class Origin:
    scheme: str
    host: str
    port: int

    @property
    def host_header(self) -> str:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 literal
        return host if self.port == default else f"{host}:{self.port}"


def split_url(url: str) -> tuple[Origin, str]:
    """``(origin, request-target)`` of an absolute http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"not an absolute http(s) URL: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Origin(parts.scheme, parts.hostname, port), target


def header_block(headers: Mapping[str, str]) -> str:
    """``name: value`` lines, each ending in CRLF. Refuses CR/LF in any name or
    value, which would otherwise let one header smuggle more into the request."""
    lines = []
    for name, value in headers.items():
        if "\r" in name or "\n" in name or ":" in name or "\r" in value or "\n" in value:
            raise ValueError(f"invalid header {name!r}")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines)


def encode_head(method: str, target: str, block: str, content_length: int | None) -> bytes:
    """The request line and header block (``block`` from ``header_block``)."""
    length = "" if content_length is None else f"content-length: {content_length}\r\n"
    return f"{method} {target} HTTP/1.1\r\n{block}{length}\r\n".encode("latin-1")
