"""The exact-match response cache."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict

__all__ = ["CacheConfig"]


class CacheConfig(_Strict):
    """Exact-match response cache (off unless enabled)."""

    # Answer an identical request from a stored answer instead of calling upstream: in
    # process, and through Redis when state.backend is redis. false: no cache at all.
    enabled: bool = False
    # Seconds an answer stays cached (at most a day, whatever is set), unless
    # model_ttl_s or the request's x-interlock-cache-ttl header sets another.
    ttl_s: float = Field(default=300.0, gt=0)
    # Per model group; 0 turns caching off for that group.
    model_ttl_s: dict[str, float] = Field(default_factory=dict)
    # temperature > 0 (or unset, which OpenAI treats as 1) is not cached unless true.
    cache_nondeterministic: bool = False
    # Tenancy: each key sees only its own entries unless a shared namespace is set.
    shared_namespace: str | None = None
    # Answers kept in each process's in-memory tier; past it the least recently used go.
    l1_max_entries: int = Field(default=10_000, ge=1)
    # Bytes of answers in each process's in-memory tier (least recently used go first);
    # a larger answer is not kept there.
    l1_max_bytes: int = Field(default=64 * 1024 * 1024, ge=1024)
    # Across instances (Redis state): wait this long for another instance's
    # identical request instead of calling upstream; 0 turns it off. A stream
    # starts its response (and heartbeats) only after this wait.
    remote_wait_s: float = Field(default=5.0, ge=0)
