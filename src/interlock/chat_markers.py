"""What the Anthropic Messages edge adds to a chat body for Anthropic
upstreams, in one place for the edge that writes it and the adapters that
read or remove it (the edges may not import the adapters: ADR 0009).

The chat body carries the meaning of each in its own fields where chat has
one (``thinking`` as ``reasoning_effort``, ``output_config``'s format as
``response_format``); the marker is what lets an Anthropic deployment get
the request as the client sent it.
"""

from __future__ import annotations

__all__ = ["BODY_MARKERS", "NATIVE_HINTS", "TOOL_HINTS"]

# Hints for Anthropic's own serving with no chat counterpart at all: an
# Anthropic deployment gets them as sent, every other one never sees them
# (``context_management``'s edits are applied to the messages for those
# instead: ``pipeline/context_edits.py``).
NATIVE_HINTS = ("cache_control", "speed", "inference_geo", "diagnostics", "context_management")
# Every top-level marker an OpenAI-compatible upstream must not receive.
BODY_MARKERS = frozenset({"thinking", "output_config", *NATIVE_HINTS})
# A tool's fields of Anthropic's alone, kept on the chat tool object (next to
# ``type`` and ``function``, as its ``cache_control``) for Anthropic upstreams.
# ``strict`` is also the chat function's own ``strict``.
TOOL_HINTS = (
    "strict",
    "input_examples",
    "defer_loading",
    "eager_input_streaming",
    "allowed_callers",
)
