"""Where the gateway keeps things: shared runtime state (memory or Redis) and
the durable store (keys, usage ledger)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from interlock.config.base import _Strict

__all__ = ["StateConfig", "StoreConfig", "StoreHealthConfig"]


class StoreHealthConfig(_Strict):
    """When Redis counts as out, and how it is probed meanwhile (``state.health``)."""

    # Timeouts or refused connections in a row before every call to Redis is
    # refused at once (and each user degrades) until a probe answers.
    trip_after: int = Field(default=3, ge=1, le=100)
    # The first background PING this long after tripping; the wait doubles
    # after each unanswered one, up to probe_max_s.
    probe_after_s: float = Field(default=0.5, gt=0, le=60)
    # The longest wait between background PINGs while Redis is out, in seconds.
    probe_max_s: float = Field(default=5.0, gt=0, le=300)

    @model_validator(mode="after")
    def _ordered(self) -> StoreHealthConfig:
        if self.probe_after_s > self.probe_max_s:
            raise ValueError("health.probe_after_s must not exceed health.probe_max_s")
        return self


class StateConfig(_Strict):
    """Shared runtime state, such as rate limits, circuit breakers, the response
    cache's shared tier, the registry's revision and search tasks. Memory is one
    process's own; Redis shares it between worker processes and instances."""

    # memory: this process only (one worker, one instance); redis: shared through url.
    backend: Literal["memory", "redis"] = "memory"
    # The Redis URL (e.g. redis://127.0.0.1:6379/0); required for redis, and
    # batch.queue.url's default.
    url: str | None = None
    # Put before every Redis key the gateway uses; batch.queue.prefix's default.
    prefix: str = "interlock:"
    # Bounds each step of a call to Redis (connect, wait for a pooled
    # connection, read): a rate-limit call past it is decided without Redis
    # (per instance, or refused under fail_closed) and counts toward
    # health.trip_after; a state call gets three times it. Short, so a hung
    # Redis costs requests little; raise it where Redis is far away or the
    # gateway's CPU is oversubscribed.
    timeout_s: float = Field(default=0.25, gt=0, le=30)
    # When Redis counts as out (timeouts or refused connections in a row) and how it is
    # probed until it answers.
    health: StoreHealthConfig = Field(default_factory=StoreHealthConfig)

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StateConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("state.backend 'redis' needs `url` (e.g. redis://127.0.0.1:6379/0)")
        return self


class StoreConfig(_Strict):
    """Durable records (keys, usage ledger). Default: SQLite in the data directory."""

    # A SQLAlchemy URL: sqlite+aiosqlite:///PATH or postgresql+asyncpg://...;
    # unset: interlock.db in $INTERLOCK_DATA_DIR (default ./.interlock).
    url: str | None = None
    # Where the usage ledger journals records until they are committed (a
    # local filesystem; kept across restarts). Default: beside the SQLite
    # file, or the data directory for PostgreSQL.
    journal_dir: str | None = None
