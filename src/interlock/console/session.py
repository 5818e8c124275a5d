"""The console's sessions: a signed cookie, and the CSRF token that goes with it.

A session is ``<expires>.<nonce>.<actor>.<mac>``: when it ends, a random
nonce, who logged in (for the audit log), and an HMAC-SHA256 of the rest
under a secret derived from the admin key's digest. Nothing is stored on the
server, so every instance behind a load balancer that has the same admin key
accepts the session, and changing the admin key ends every session at once.
A logout ends its own session on every instance too (``ended.py``: its nonce
is kept in the state store until it would have expired).

The CSRF token is an HMAC of the session's nonce: a page can only be posted
with the token the server rendered into it for that session, and the cookie
is ``SameSite=Strict`` besides.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ConsoleSession", "SessionSigner"]

_VERSION = b"interlock console session v1"
_MAX_ACTOR = 64


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class ConsoleSession:
    actor: str
    nonce: str
    expires_at: float
    csrf_token: str


class SessionSigner:
    """Issues and checks session cookies. ``admin_key_digest``: SHA-256 of
    the admin key; ``lifetime_s``: how long a login lasts; ``clock``: wall
    seconds (injectable for tests)."""

    def __init__(
        self,
        admin_key_digest: bytes,
        lifetime_s: float = 8 * 3600,
        clock: Callable[[], float] = time.time,
    ):
        self._secret = hmac.new(admin_key_digest, _VERSION, hashlib.sha256).digest()
        self.lifetime_s = lifetime_s
        self._clock = clock

    def issue(self, actor: str) -> tuple[str, ConsoleSession]:
        """A new session for ``actor``: the cookie's value and the session."""
        actor = "".join(ch for ch in actor.strip() if ch.isprintable())[:_MAX_ACTOR] or "admin"
        nonce = _b64(secrets.token_bytes(18))
        expires_at = int(self._clock() + self.lifetime_s)
        payload = f"{expires_at}.{nonce}.{_b64(actor.encode())}"
        cookie = f"{payload}.{self._mac(payload)}"
        return cookie, ConsoleSession(actor, nonce, expires_at, self._csrf(nonce))

    def verify(self, cookie: str | None) -> ConsoleSession | None:
        """The session the cookie holds, or None: absent, forged, malformed or expired."""
        if not cookie or len(cookie) > 512:
            return None
        payload, _, mac = cookie.rpartition(".")
        if not hmac.compare_digest(mac.encode(), self._mac(payload).encode()):
            return None
        try:
            expires, nonce, actor = payload.split(".")
            expires_at = int(expires)
            name = _unb64(actor).decode()
        except ValueError:  # includes binascii.Error and UnicodeDecodeError
            return None
        if expires_at <= self._clock():
            return None
        return ConsoleSession(name, nonce, expires_at, self._csrf(nonce))

    def csrf_ok(self, session: ConsoleSession, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(
            token.encode(), session.csrf_token.encode()
        )

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._secret, payload.encode(), hashlib.sha256).digest())

    def _csrf(self, nonce: str) -> str:
        return _b64(hmac.new(self._secret, b"csrf." + nonce.encode(), hashlib.sha256).digest())
