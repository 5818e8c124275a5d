"""What the Anthropic Messages edge adds to a chat body for Anthropic
upstreams, in one place for the edge that writes it and the adapters that
read or remove it (the edges may not import the adapters: ADR 0009).

The chat body carries the meaning of each in its own fields where chat has
one (``thinking`` as ``reasoning_effort``, ``output_config``'s format as
``response_format``); the marker is what lets an Anthropic deployment get
the request as the client sent it.

It also reads the few chat fields that servers name differently (a turn's
reasoning, the prompt tokens a cache served), for the edges and the
pipeline alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "ANTHROPIC_BLOCK",
    "ANTHROPIC_CITATION",
    "ANTHROPIC_TEXT",
    "ANTHROPIC_TOOLS",
    "BODY_MARKERS",
    "CONTENT_BLOCKS",
    "DEFERRED_TOOLS",
    "HOSTED_WEB_SEARCH",
    "IMAGE_TRANSFORMATIONS",
    "LEGACY_COMPLETION",
    "NATIVE_HINTS",
    "OFFLINE",
    "OPENAI_REASONING",
    "PAUSE_TURN",
    "REASONING_FIELDS",
    "REASONING_SUMMARY",
    "SAID_BY_CHAT",
    "TOOL_HINTS",
    "TOOL_REFERENCES",
    "cached_prompt_tokens",
    "cached_search",
    "is_openai_reasoning",
    "prompt_token_ids",
    "reasoning_text",
    "still_said",
]

# Hints for Anthropic's own serving with no chat counterpart at all: an
# Anthropic deployment gets them as sent, every other one never sees them
# (``context_management``'s edits are applied to the messages for those
# instead: ``pipeline/context_edits.py``).
NATIVE_HINTS = ("cache_control", "speed", "inference_geo", "diagnostics", "context_management")
# Anthropic's own tool types (server tools such as ``web_search_20250305``,
# which Anthropic runs, and its schema-less client tools such as
# ``bash_20250124``), as the client sent them. Only an Anthropic deployment
# takes them as they are: for a model with none, the validate stage makes the
# client tools it knows functions and the web search the gateway's (ADR 0029,
# 0030); an attempt on another deployment is refused (``pipeline/attempt.py``).
ANTHROPIC_TOOLS = "anthropic_tools"
# OpenAI's hosted web search, offered through the Responses API (its allowed
# domains and the user's location): an Anthropic deployment runs it as its
# own ``web_search`` server tool, a Responses API one (``api: responses``) as
# the hosted tool again; every other upstream leaves it out.
HOSTED_WEB_SEARCH = "hosted_web_search"
# In that marker's wish, false where the search must not reach the web
# (``external_web_access: false``, Codex's default cached mode): only a
# Responses API deployment runs it (OpenAI answers from its cache); the
# others' searches, and the gateway's, are live, so they leave it out.
OFFLINE = "external_web_access"
# On an assistant message or answer, a ``thinking_blocks`` entry of this type
# is a reasoning item of OpenAI's Responses API (``api: responses``):
# ``encrypted_content`` and ``summary`` as that upstream wrote them, which a
# reasoning model needs back in its next turns. Only such a deployment reads
# it; the other adapters leave it out, as that upstream leaves out theirs
# (another vendor's signed reasoning cannot be verified).
OPENAI_REASONING = "reasoning"
# The Responses edge's ``reasoning.summary`` wish (auto, concise, detailed):
# a deployment with ``api: responses`` asks its upstream for summaries with
# it; chat has no such field, so every other upstream goes without.
REASONING_SUMMARY = "reasoning_summary"
# A legacy completion (``/v1/completions``), for upstreams that serve that API
# themselves (``Provider.serves_completions``): ``echo``, ``logprobs`` (a
# count) and ``best_of`` as the client sent them, and ``needs``, the first
# parameter only such an upstream can honour (None when a chat model can
# answer). The prompts are the chat body's user messages, one each, and a
# ``suffix`` is the body's own field, so guardrails and the cache see them as
# any text. The attempt stage takes the marker out for every other upstream.
# Prompts of token ids are the marker's ``tokens`` (a list of id lists), their
# user messages left empty (``prompt_token_ids``); ``score_only``: the client's
# ``max_tokens: 0`` with ``echo`` (the chat body asks for one token).
LEGACY_COMPLETION = "legacy_completion"
# Anthropic's tool search (Claude Code's ToolSearch over deferred MCP tools): a
# tool with ``defer_loading`` is loaded for the model only once a tool result
# names it in a ``tool_reference`` block. On a ``tool`` message, the tools its
# result referenced, by name, in order (an Anthropic deployment is sent the
# blocks again); on the body, true where a tool is deferred or a result
# references one. Every other upstream is sent the tools the conversation
# loaded so far, the references as text (``pipeline/deferred_tools.py``).
TOOL_REFERENCES = "tool_references"
# On an image part: what Anthropic does to the image before its model sees it
# (``oversized_image``: downsize or error), for Anthropic upstreams alone.
IMAGE_TRANSFORMATIONS = "transformations"
DEFERRED_TOOLS = "deferred_tools"
# Every top-level marker an OpenAI-compatible upstream must not receive.
BODY_MARKERS = frozenset(
    {
        "thinking",
        "output_config",
        ANTHROPIC_TOOLS,
        HOSTED_WEB_SEARCH,
        REASONING_SUMMARY,
        DEFERRED_TOOLS,
        *NATIVE_HINTS,
    }
)
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

# On an assistant message, both ways: the turn's blocks as Anthropic wrote
# them, where they hold what chat cannot (server tool calls and results, text
# with citations). Chat's ``content`` and ``tool_calls`` say the same turn
# for everyone else; an Anthropic deployment is sent the blocks.
CONTENT_BLOCKS = "content_blocks"
# The Anthropic blocks a chat message's own fields say; any other kind (a
# server tool's call or result), or text with citations, needs the blocks.
SAID_BY_CHAT = frozenset(("text", "thinking", "redacted_thinking", "tool_use"))


def still_said(blocks: Sequence[Any], text: str, calls: Sequence[tuple[Any, Any]]) -> bool:
    """Whether a turn's ``content_blocks`` still say its chat ``text`` and
    ``calls`` (id, input object), block for block: a guardrail that rewrote
    either makes the blocks stale, and then the message's own fields count."""
    written_text = "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")
    written_calls = [(b.get("id"), b.get("input")) for b in blocks if b.get("type") == "tool_use"]
    return written_text == text and written_calls == list(calls)


# What the Anthropic adapter adds to a streamed chunk's delta for the same
# blocks, so the Messages edge can write them as Anthropic streamed them:
# a whole server block (written as it ends), the start of a new text block
# (``true``; once the answer has server blocks, text blocks are kept apart:
# each holds its own citations) and one citation for the open text block.
ANTHROPIC_BLOCK = "anthropic_block"
ANTHROPIC_TEXT = "anthropic_text"
ANTHROPIC_CITATION = "anthropic_citation"
# A choice's ``stop_reason`` (vLLM's field: the stop sequence that matched)
# for Anthropic's paused turn: the server tools ran out of turns and the
# client may continue by sending the answer back.
PAUSE_TURN = "pause_turn"


# -- not markers: chat fields that go by more than one name across servers --

# The two names a turn's reasoning as text goes by on a chat message or
# delta. ``reasoning_content`` is DeepSeek's, which our adapters write;
# ``reasoning`` is what vLLM (since 0.16), Ollama, OpenRouter and Groq
# answer with. The edges read either.
REASONING_FIELDS = ("reasoning_content", "reasoning")


def reasoning_text(message: Any) -> str | None:
    """A chat message's or delta's reasoning as text, by either name; None where it has none."""
    for name in REASONING_FIELDS:
        value = message.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def cached_prompt_tokens(usage: Any) -> int:
    """The prompt tokens read from a cache, by OpenAI's name
    (``prompt_tokens_details.cached_tokens``, which the adapters write) or,
    where that is absent, DeepSeek's (``prompt_cache_hit_tokens``)."""
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and details.get("cached_tokens") is not None:
        found = details["cached_tokens"]
    else:
        found = usage.get("prompt_cache_hit_tokens")
    return found if isinstance(found, int) and not isinstance(found, bool) and found > 0 else 0


def is_openai_reasoning(block: Any) -> bool:
    """Whether a ``thinking_blocks`` entry is OpenAI's (``OPENAI_REASONING``)."""
    return isinstance(block, dict) and block.get("type") == OPENAI_REASONING


def cached_search(wish: Any) -> bool:
    """Whether a hosted web search's wish must not reach the web (``OFFLINE``)."""
    return isinstance(wish, dict) and wish.get(OFFLINE) is False


def prompt_token_ids(body: dict[str, Any]) -> list[list[int]] | None:
    """A legacy completion's prompts as token ids, where it was written so;
    None for any other body (text prompts included)."""
    legacy = body.get(LEGACY_COMPLETION)
    if not isinstance(legacy, dict):
        return None
    tokens = legacy.get("tokens")
    return tokens if isinstance(tokens, list) and tokens else None
