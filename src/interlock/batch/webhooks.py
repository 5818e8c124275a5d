"""Webhooks: when an async job or a batch finishes, the gateway POSTs a JSON
event to a URL the client gave, signed, retried with backoff.

Where a webhook may go
----------------------
Only to hosts the operator listed in ``batch.webhooks.allowed_hosts`` (an
exact host, or ``*.example.com`` for its sub-domains): ``check_webhook_url``
refuses anything else when the job is submitted. This is the SSRF guard; the
gateway also never follows a redirect, which could point anywhere.

The request
-----------
``POST <url>`` with the event as a JSON body and these headers:

- ``Content-Type: application/json``
- ``Interlock-Webhook-Id: <id>``: the same on every retry of one event;
  receivers dedupe by it, since a delivery can arrive more than once (an
  answer lost on the way back is retried).
- ``Interlock-Signature: t=<unix seconds>,v1=<hex>``
- ``User-Agent: interlock-webhooks``

Any 2xx is a delivery. 408, 429, 5xx, timeouts and connection errors are
retried, up to ``max_attempts`` in all, after exponential backoff with full
jitter (a ``Retry-After`` is honoured up to the cap); any other status is
final.

The signature
-------------
``v1`` is the lower-case hex HMAC-SHA256, keyed with the webhook secret
(``batch.webhooks.secret``), of the timestamp ``t`` in decimal, a full stop,
and the raw request body: ``HMAC(secret, f"{t}.".encode() + body)``. Each
attempt is signed afresh, so ``t`` is the time of that attempt. To check one,
recompute it over the body's bytes as received (before parsing the JSON),
compare in constant time, and refuse a ``t`` more than five minutes from your
clock, which stops a captured request from being replayed later. ``verify``
here does exactly that. Unknown fields in the header are ignored, and there
may be more than one ``v1`` (any matching one passes).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from interlock.errors import InvalidRequest
from interlock.providers.h1 import (
    ConnectionPool,
    H1Error,
    Origin,
    Response,
    encode_head,
    header_block,
    split_url,
)
from interlock.providers.retry_after import parse_retry_after

__all__ = ["MAX_URL_CHARS", "WebhookSender", "check_webhook_url", "sign", "verify"]

MAX_URL_CHARS = 2048
# Origins with a keep-alive pool open at once; the least recently used closes first.
_MAX_POOLS = 16
# Connections per origin: deliveries to one receiver beyond this wait their turn.
_MAX_CONNECTIONS = 8
# Body bytes of a receiver's answer read (and thrown away) to keep the
# connection for reuse; a longer answer closes it instead.
_MAX_DRAIN_BYTES = 64 * 1024
# A signature header longer than this is garbage, not parsed.
_MAX_SIGNATURE_CHARS = 1024

log = logging.getLogger("interlock.batch.webhooks")


# -- where a webhook may go ----------------------------------------------------


def check_webhook_url(url: object, allowed_hosts: Collection[str]) -> str:
    """``url`` if the gateway may POST to it, else ``InvalidRequest`` (param ``webhook``).

    It must be an absolute http(s) URL of at most ``MAX_URL_CHARS`` printable
    ASCII characters, without credentials, whose host (case-insensitive) is
    in ``allowed_hosts``: listed exactly, or under a ``*.example.com`` entry
    (sub-domains only, not ``example.com`` itself).
    """
    if not allowed_hosts:
        raise _refused("webhooks are disabled on this gateway (batch.webhooks.allowed_hosts)")
    if not isinstance(url, str):
        raise _refused("webhook must be a URL string")
    if len(url) > MAX_URL_CHARS:
        raise _refused(f"webhook URL is longer than {MAX_URL_CHARS} characters")
    # A space or control character would end up in the request line.
    if not url.isascii() or any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise _refused("webhook URL must be ASCII without spaces or control characters")
    try:
        parts = urlsplit(url)
        _ = parts.port  # a port that is not a number from 0 to 65535 raises ValueError
    except ValueError:
        raise _refused("webhook is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise _refused("webhook URL must be http or https")
    if "@" in parts.netloc:
        raise _refused("webhook URL must not carry credentials (user:password@)")
    host = (parts.hostname or "").rstrip(".")
    if not host or host.startswith("."):
        raise _refused("webhook URL has no host")
    if not _host_allowed(host, allowed_hosts):
        raise _refused(
            f"webhook host {host!r} is not allowed on this gateway (batch.webhooks.allowed_hosts)"
        )
    return url


def _host_allowed(host: str, allowed_hosts: Collection[str]) -> bool:
    for entry in allowed_hosts:
        entry = entry.strip().lower().rstrip(".").strip("[]")  # an IPv6 literal either way
        if entry.startswith("*."):
            if host.endswith(entry[1:]):  # ".example.com": sub-domains, not the domain
                return True
        elif entry and host == entry:
            return True
    return False


def _refused(message: str) -> InvalidRequest:
    return InvalidRequest(message, param="webhook")


# -- the signature ---------------------------------------------------------------


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Interlock-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_digest(secret, body, timestamp)}"


def verify(
    secret: bytes, header: str | None, body: bytes, now: float, tolerance_s: float = 300
) -> bool:
    """Whether ``header`` (an ``Interlock-Signature`` value) signs ``body`` with
    ``secret`` at a time within ``tolerance_s`` of ``now``. Malformed is False."""
    if not isinstance(header, str) or len(header) > _MAX_SIGNATURE_CHARS:
        return False
    timestamps: list[int] = []
    candidates: list[bytes] = []
    for field in header.split(","):
        name, eq, value = field.strip().partition("=")
        if not eq:
            return False
        if name == "t":
            if not (value.isascii() and value.isdigit()):
                return False
            timestamps.append(int(value))
        elif name == "v1" and value.isascii():
            candidates.append(value.encode("ascii"))
    if len(timestamps) != 1 or not candidates:
        return False
    timestamp = timestamps[0]
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = _digest(secret, body, timestamp).encode("ascii")
    # Every candidate is compared, so the time taken does not say which matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched


def _digest(secret: bytes, body: bytes, timestamp: int) -> str:
    return hmac.new(secret, b"%d." % timestamp + body, hashlib.sha256).hexdigest()


# -- delivery --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Outcome:
    """How one attempt went."""

    delivered: bool
    retryable: bool
    reason: str  # for the log: a status or an error, never the secret or the URL
    retry_after_s: float | None = None


class WebhookSender:
    """POSTs signed events, retrying what may succeed later.

    Uses the gateway's own HTTP/1.1 client (``interlock.providers.h1``): a
    bounded keep-alive pool per receiver origin, at most ``_MAX_POOLS`` of
    them. Each attempt (waiting for a connection, connecting, TLS, sending and
    reading the answer's head) ends within ``timeout_s``. ``ssl_context``
    checks https receivers (default: the system's CAs). ``sleep``, ``clock``
    (unix seconds, for the signature) and ``rng`` (the jitter) are injectable
    so the policy is tested without waiting.
    """

    def __init__(
        self,
        secret: bytes,
        *,
        max_attempts: int = 6,
        backoff_base_s: float = 1.0,
        backoff_max_s: float = 60.0,
        timeout_s: float = 10.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ):
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if timeout_s <= 0 or backoff_base_s < 0 or backoff_max_s < 0:
            raise ValueError("timeout_s must be positive and the backoff times not negative")
        self._secret = secret
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.timeout_s = timeout_s
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        self._ssl = ssl_context  # built with the first https pool if not given
        self._pools: OrderedDict[Origin, ConnectionPool] = OrderedDict()

    def __repr__(self) -> str:
        return f"WebhookSender(max_attempts={self.max_attempts}, timeout_s={self.timeout_s:g})"

    async def deliver(self, url: str, event: Mapping[str, Any], *, event_id: str) -> bool:
        """POST ``event`` to ``url`` (already passed ``check_webhook_url``);
        True once a 2xx answers, False when a final status or the last attempt fails."""
        origin, target = split_url(url)
        body = orjson.dumps(dict(event))
        fixed = {
            "host": origin.host_header,
            "content-type": "application/json",
            "user-agent": "interlock-webhooks",
            "interlock-webhook-id": event_id,
        }
        block = header_block(fixed)  # refuses CR/LF in the id before anything is sent
        for attempt in range(1, self.max_attempts + 1):
            signature = sign(self._secret, body, int(self._clock()))
            head = encode_head(
                "POST", target, block + header_block({"interlock-signature": signature}), len(body)
            )
            outcome = await self._attempt(origin, head, body)
            if outcome.delivered:
                return True
            last = not outcome.retryable or attempt == self.max_attempts
            delay = 0.0 if last else self.backoff(attempt, outcome.retry_after_s)
            log.warning(
                "webhook %s to %s: attempt %d/%d failed (%s); %s",
                event_id,
                origin.host_header,  # not the URL: its path or query may hold a token
                attempt,
                self.max_attempts,
                outcome.reason,
                "giving up" if last else f"retrying in {delay:.1f} s",
            )
            if last:
                return False
            await self._sleep(delay)
        return False  # not reached: the last attempt returns above

    def backoff(self, attempt: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based): full
        jitter under ``backoff_base_s * 2**(attempt-1)``, capped at
        ``backoff_max_s``; at least the receiver's ``Retry-After``, to the cap."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** min(attempt - 1, 64))
        delay = ceiling * self._rng.random()
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, self.backoff_max_s))
        return delay

    async def aclose(self) -> None:
        """Close every pooled connection."""
        pools = list(self._pools.values())
        self._pools.clear()
        for pool in pools:
            await pool.aclose()

    async def _attempt(self, origin: Origin, head: bytes, body: bytes) -> _Outcome:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                pool = await self._pool(origin)
                resp = await pool.request(head, body, self.timeout_s, self.timeout_s)
        except TimeoutError:
            return _Outcome(False, True, f"no answer within {self.timeout_s:g} s")
        except H1Error as exc:  # refused, reset, TLS, DNS, garbage: maybe better next time
            return _Outcome(False, True, f"{type(exc).__name__}: {exc}")
        await _discard_body(resp, deadline)
        status = resp.status
        if 200 <= status < 300:
            return _Outcome(True, False, f"HTTP {status}")
        retryable = status in (408, 429) or status >= 500
        retry_after = None
        if retryable:
            retry_after = parse_retry_after(resp.headers.get("retry-after"), now=self._clock())
        return _Outcome(False, retryable, f"HTTP {status}", retry_after)

    async def _pool(self, origin: Origin) -> ConnectionPool:
        pool = self._pools.get(origin)
        if pool is not None:
            self._pools.move_to_end(origin)
            return pool
        if origin.scheme == "https" and self._ssl is None:
            # Once per sender: loading the system's CA store costs ~30 ms.
            self._ssl = ssl.create_default_context()
        context = self._ssl if origin.scheme == "https" else None
        pool = self._pools[origin] = ConnectionPool(
            origin, _MAX_CONNECTIONS, self.timeout_s, ssl_context=context
        )
        if len(self._pools) > _MAX_POOLS:
            _, oldest = self._pools.popitem(last=False)
            # Its requests in flight finish; their connections close on release.
            await oldest.aclose()
        return pool


async def _discard_body(resp: Response, deadline: float) -> None:
    """Read a short answer's body to its end, so its connection can be reused;
    close the connection instead if the body is long, slow or broken. The
    status already decided the outcome: nothing here changes it."""
    read = 0
    try:
        async with asyncio.timeout_at(deadline):
            while chunk := await resp.readany():
                read += len(chunk)
                if read > _MAX_DRAIN_BYTES:
                    resp.close()
                    return
    except (TimeoutError, H1Error):
        resp.close()
    except BaseException:
        resp.close()
        raise
