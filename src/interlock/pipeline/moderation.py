"""What a moderation request means when it names no model: OpenAI's
default, as the SDK assumes (the online edge and batch lines alike)."""

from __future__ import annotations

__all__ = ["DEFAULT_MODERATION_MODEL"]

DEFAULT_MODERATION_MODEL = "omni-moderation-latest"
