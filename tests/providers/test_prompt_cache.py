"""The cache markers the Anthropic and Bedrock adapters write from a chat
body (``providers/prompt_cache.py``): OpenAI breakpoints as markers, the
latest four kept whatever asked for them, a named cache or a deployment's
``auto`` as Anthropic's top-level marker."""

from __future__ import annotations

from typing import Any

from interlock.providers.anthropic_wire import chat_request
from interlock.providers.bedrock_wire import converse_request

MARK = {"type": "ephemeral"}


def _turns(count: int, **marker: Any) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for n in range(count):
        turns.append({"role": "user", "content": [{"type": "text", "text": f"Q{n}", **marker}]})
        turns.append({"role": "assistant", "content": f"A{n}"})
    return [*turns, {"role": "user", "content": "Last"}]


def test_an_anthropic_client_s_fifth_marker_is_dropped_not_refused() -> None:
    sent = chat_request({"messages": _turns(5, cache_control=MARK)}, "claude", ()).body
    marked = [m for m in sent["messages"] if isinstance(m["content"], list)]
    kept = ["cache_control" in m["content"][0] for m in marked]
    assert kept == [False, True, True, True, True]


def test_the_top_marker_only_where_no_block_is_marked() -> None:
    plain = {"messages": [{"role": "user", "content": "Hi"}]}
    assert "cache_control" not in chat_request(plain, "claude", ()).body
    assert chat_request(plain, "claude", (), cache_every_request=True).body["cache_control"] == MARK
    keyed = {**plain, "prompt_cache_key": "k"}
    assert chat_request(keyed, "claude", ()).body["cache_control"] == MARK
    native = {**keyed, "cache_control": {"type": "ephemeral", "ttl": "1h"}}  # the client's own
    assert chat_request(native, "claude", ()).body["cache_control"]["ttl"] == "1h"


def test_bedrock_keeps_the_latest_four_cache_points() -> None:
    breakpoint = {"prompt_cache_breakpoint": {"mode": "explicit"}}
    sent = converse_request({"messages": _turns(6, **breakpoint)}).body
    points = [
        i
        for i, turn in enumerate(sent["messages"])
        for block in turn["content"]
        if "cachePoint" in block
    ]
    assert points == [4, 6, 8, 10]  # the user turns of the last four questions
