"""What may be cached, for how long, and under whose namespace: pure decisions.

``CachePolicy`` reads a request body and its headers and answers with a
``CacheDirective`` (look up? fill? for how long?) or ``None`` (leave the
cache out entirely). No I/O, no clock: tested with plain dicts.

Only deterministic requests are cached by default: with ``temperature`` above
0, or unset (OpenAI then samples at 1), a client asking twice expects two
draws, not one answer replayed. ``n > 1`` and ``logprobs`` are never cached:
the stored entry keeps one answer's text, not several draws or per-token
log-probabilities, and replaying it without them would be wrong.

Request headers:

- ``Cache-Control: no-cache``: skip the lookup (and joining an in-flight
  identical request), still store the fresh answer;
- ``Cache-Control: no-store``: neither;
- ``x-interlock-cache-ttl: SECONDS``: store for that long (capped at
  ``max_ttl_s``; ``0`` stores nothing).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from interlock.errors import InvalidRequest

__all__ = ["TTL_HEADER", "CacheDirective", "CachePolicy", "CacheSettings"]

TTL_HEADER = "x-interlock-cache-ttl"
MiB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class CacheSettings:
    """Typed cache configuration; the composition root builds it from config."""

    enabled: bool = True
    ttl_s: float = 300.0
    # Per model group; 0 turns caching off for that group.
    model_ttl_s: Mapping[str, float] = field(default_factory=dict)
    max_ttl_s: float = 86_400.0
    cache_nondeterministic: bool = False
    # Tenancy: every key reads and writes its own namespace unless one of
    # these says otherwise (a namespace shared by all keys, or key -> namespace).
    shared_namespace: str | None = None
    namespaces: Mapping[str, str] = field(default_factory=dict)
    # In-process tier.
    l1_max_entries: int = 10_000
    l1_max_bytes: int = 64 * MiB
    # Shared tier (the state store); entries over this size stay local.
    l2_enabled: bool = True
    l2_max_entry_bytes: int = 1 * MiB
    # Coalescing in one process.
    coalesce: bool = True
    follower_timeout_s: float = 60.0
    stream_buffer_bytes: int = 4 * MiB
    # Coalescing across instances; remote_wait_s = 0 turns the lock off.
    remote_wait_s: float = 5.0
    remote_poll_s: float = 0.05
    remote_poll_max_s: float = 0.5
    lock_ttl_s: float = 30.0
    # How long an instance trusts the invalidation generations it last read.
    generation_ttl_s: float = 1.0
    # Streaming replay: characters of content per chunk (cut at whitespace).
    replay_piece_chars: int = 48

    def __post_init__(self) -> None:
        positive = {
            "ttl_s": self.ttl_s,
            "max_ttl_s": self.max_ttl_s,
            "l1_max_entries": self.l1_max_entries,
            "l1_max_bytes": self.l1_max_bytes,
            "l2_max_entry_bytes": self.l2_max_entry_bytes,
            "follower_timeout_s": self.follower_timeout_s,
            "stream_buffer_bytes": self.stream_buffer_bytes,
            "remote_poll_s": self.remote_poll_s,
            "remote_poll_max_s": self.remote_poll_max_s,
            "lock_ttl_s": self.lock_ttl_s,
            "replay_piece_chars": self.replay_piece_chars,
        }
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"cache setting {name} must be positive, got {value!r}")
        for name, value in (
            ("remote_wait_s", self.remote_wait_s),
            ("generation_ttl_s", self.generation_ttl_s),
        ):
            if value < 0:
                raise ValueError(f"cache setting {name} must not be negative, got {value!r}")


@dataclass(frozen=True, slots=True)
class CacheDirective:
    """The policy's answer for one request."""

    lookup: bool  # may be served from the cache or an identical in-flight request
    fill: bool  # the fresh answer may be stored
    ttl_s: float


class CachePolicy:
    """Pure decisions from ``CacheSettings``."""

    def __init__(self, settings: CacheSettings):
        self.settings = settings

    def namespace(self, key_name: str) -> str:
        """The tenant a key reads and writes: its own unless configured to share."""
        if self.settings.shared_namespace is not None:
            return self.settings.shared_namespace
        return self.settings.namespaces.get(key_name, f"key:{key_name}")

    def ttl_for(self, model: str) -> float:
        return self.settings.model_ttl_s.get(model, self.settings.ttl_s)

    def cacheable(self, body: Mapping[str, Any]) -> bool:
        """Whether a chat request's answer may be replayed to an identical request."""
        n = body.get("n")
        if n is not None and n != 1:
            return False
        if body.get("logprobs") is True:
            return False
        if body.get("audio") is not None or "audio" in (body.get("modalities") or ()):
            return False
        if self.settings.cache_nondeterministic:
            return True
        temperature = body.get("temperature")
        return isinstance(temperature, int | float) and temperature == 0

    def directive(
        self,
        model: str,
        body: Mapping[str, Any],
        headers: Mapping[str, str],
        *,
        embedding: bool = False,
    ) -> CacheDirective | None:
        """Look up, fill, both or (``None``) neither; raises ``InvalidRequest``
        for a malformed TTL header, because a typo silently ignored would
        cache for the wrong time."""
        if not self.settings.enabled:
            return None
        ttl_s = self.ttl_for(model)
        if not ttl_s > 0:
            return None
        if not embedding and not self.cacheable(body):
            return None
        lowered = {name.lower(): value for name, value in headers.items()}
        directives = {part.strip().lower() for part in lowered.get("cache-control", "").split(",")}
        if "no-store" in directives:
            return None
        lookup = "no-cache" not in directives
        fill = True
        raw_ttl = lowered.get(TTL_HEADER)
        if raw_ttl is not None:
            override = _parse_ttl(raw_ttl)
            fill = override > 0
            ttl_s = min(override, self.settings.max_ttl_s) if fill else ttl_s
        if not lookup and not fill:
            return None
        return CacheDirective(lookup=lookup, fill=fill, ttl_s=min(ttl_s, self.settings.max_ttl_s))


def _parse_ttl(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = float("nan")
    if not value >= 0 or value == float("inf"):
        raise InvalidRequest(
            f"Invalid value for header '{TTL_HEADER}': expected seconds, got {raw!r}.",
            param=TTL_HEADER,
            code="invalid_value",
        )
    return value
