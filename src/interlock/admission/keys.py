"""API key authentication: bearer key -> principal.

Keys are held only as SHA-256 digests, so a lookup compares digests (no
timing signal about the key's prefix) and a memory dump shows no keys.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass

from interlock.config import KeyConfig
from interlock.errors import AuthenticationFailed

__all__ = ["KeyRing", "Principal"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the configured key's name and what it may do."""

    name: str
    permissions: frozenset[str] = frozenset()


class KeyRing:
    def __init__(self, keys: Iterable[KeyConfig]):
        self._by_digest = {
            hashlib.sha256(k.key.reveal().encode()).digest(): Principal(
                k.name, frozenset(k.permissions)
            )
            for k in keys
        }

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve an ``Authorization`` header value, or raise 401."""
        if not authorization:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationFailed(
                "Malformed Authorization header: expected 'Bearer YOUR_KEY'."
            )
        principal = self._by_digest.get(hashlib.sha256(token.encode()).digest())
        if principal is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return principal
