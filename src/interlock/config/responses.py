"""The Responses API (``responses:``): how long stored responses are kept,
and how many items a conversation may hold."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict

__all__ = ["ResponsesConfig"]

_DAY_S = 86_400


class ResponsesConfig(_Strict):
    # A stored response (``store: true``, the default) can be read back and
    # continued (``previous_response_id``) for this many days; OpenAI keeps
    # them 30. Expired ones answer 404 and are deleted a few at a time.
    retention_days: int = Field(default=30, ge=1, le=3650)
    # Items one conversation (the Conversations API) may hold: adding beyond it is a 400,
    # and so is a response in a conversation that holds this many (its items are read
    # whole as the model's context on every turn).
    max_conversation_items: int = Field(default=10_000, ge=1, le=1_000_000)
    # A background response created with ``stream: true`` keeps its events in the
    # state store for this many seconds after its last one, to be read again
    # (GET /v1/responses/{id}?stream=true&starting_after=N) from any instance; one
    # key per event, so the in-memory store's key bound limits how many it holds.
    background_events_s: int = Field(default=600, ge=10, le=7 * 24 * 3600)
    # Server-side compaction (``context_management``) past this many tokens of
    # context, where a request's compaction entry gives no ``compact_threshold``:
    # the gateway does not know each model's context window, and most models
    # served today read at least 128k.
    compact_threshold: int = Field(default=100_000, ge=1)

    @property
    def retention_s(self) -> int:
        return self.retention_days * _DAY_S
