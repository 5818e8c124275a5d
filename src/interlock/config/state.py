"""Where the gateway keeps things: shared runtime state (memory or Redis) and
the durable store (keys, usage ledger)."""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from interlock.config.base import _Strict

__all__ = ["StateConfig", "StoreConfig"]


class StateConfig(_Strict):
    backend: Literal["memory", "redis"] = "memory"
    url: str | None = None
    prefix: str = "interlock:"

    @model_validator(mode="after")
    def _redis_needs_url(self) -> StateConfig:
        if self.backend == "redis" and not self.url:
            raise ValueError("state.backend 'redis' needs `url` (e.g. redis://127.0.0.1:6379/0)")
        return self


class StoreConfig(_Strict):
    """Durable records (keys, usage ledger). Default: SQLite in the data directory."""

    url: str | None = None
