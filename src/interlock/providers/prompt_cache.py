"""Prompt-cache markers for the upstreams that cache only where marked
(Anthropic, and Claude on Bedrock), from what any client asks.

Anthropic caches a prompt's prefix up to each block marked ``cache_control``
(four at most in a request), or, marked at the request's top, up to its last
block. OpenAI caches without being asked, and a client marks the end of a
reusable prefix with ``prompt_cache_breakpoint`` on a content part (its
explicit caching; it writes up to the latest four) or names the
conversation's cache with ``prompt_cache_key``. So for the upstreams that
need markers:

- a part's ``prompt_cache_breakpoint`` is a ``cache_control`` marker on its
  block (its ``ttl`` of ``12h`` the longest Anthropic keeps, one hour; the
  default otherwise, five minutes);
- the latest four markers are kept where a request has more, as OpenAI
  writes the latest four (Anthropic refuses a fifth);
- a request with no marker of its own is cached at the top (Anthropic's
  automatic caching) where the client named its cache (``prompt_cache_key``,
  which Codex sends with every turn of a conversation) or the deployment
  caches every request (``prompt_caching: auto``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = [
    "BREAKPOINT",
    "MAX_MARKERS",
    "automatic_marker",
    "kept_latest",
    "part_marker",
]

JSONDict = dict[str, Any]

BREAKPOINT = "prompt_cache_breakpoint"
MAX_MARKERS = 4


def part_marker(part: JSONDict) -> JSONDict | None:
    """The ``cache_control`` marker a chat part or message asks for: its own,
    or the one its OpenAI breakpoint stands for."""
    marker = part.get("cache_control")
    if isinstance(marker, dict):
        return marker
    wish = part.get(BREAKPOINT)
    if not isinstance(wish, dict):
        return None
    return {"type": "ephemeral", "ttl": "1h"} if wish.get("ttl") == "12h" else {"type": "ephemeral"}


def automatic_marker(body: JSONDict, every_request: bool) -> JSONDict | None:
    """The marker for the top of a request whose parts carry none: where the
    deployment caches every request, or the client named its cache."""
    if not every_request and not body.get("prompt_cache_key"):
        return None
    long_lived = body.get("prompt_cache_retention") == "24h"
    return {"type": "ephemeral", "ttl": "1h"} if long_lived else {"type": "ephemeral"}


def kept_latest(marked: Iterable[JSONDict], key: str = "cache_control") -> int:
    """Take ``key`` off all but the latest ``MAX_MARKERS`` of the ``marked``
    blocks (in the prompt's order); how many are left marked."""
    blocks = [block for block in marked if key in block]
    for block in blocks[:-MAX_MARKERS]:
        del block[key]
    return min(len(blocks), MAX_MARKERS)
