"""Chat Completions (``chat_completions:``): how long stored completions are kept."""

from __future__ import annotations

from pydantic import Field

from interlock.config.base import _Strict

__all__ = ["ChatCompletionsConfig"]

_DAY_S = 86_400


class ChatCompletionsConfig(_Strict):
    # A completion asked with `store: true` can be retrieved, listed, updated and
    # deleted (/v1/chat/completions/{id}) by the key that made it for this many days;
    # OpenAI keeps them 30. Expired ones answer 404 and are deleted a few at a time.
    retention_days: int = Field(default=30, ge=1, le=3650)

    @property
    def retention_s(self) -> int:
        return self.retention_days * _DAY_S
