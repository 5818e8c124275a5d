"""The gateway's own web search (``pipeline/web_search.py``): the plan made
from a request, and the rounds run with a scripted model and searcher (no
network: the end-to-end runs are ``tests/dialects/test_gateway_web_search.py``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import orjson
import pytest

from interlock.chat_markers import (
    ANTHROPIC_BLOCK,
    ANTHROPIC_TEXT,
    ANTHROPIC_TOOLS,
    CONTENT_BLOCKS,
    HOSTED_WEB_SEARCH,
)
from interlock.errors import InvalidRequest
from interlock.pipeline.web_search import MAX_USES_CAP, SearchRun, WebSearch, search_tools_only
from interlock.search.backends.base import BackendError, SearchResult
from interlock.telemetry.record import RequestRecord

SEARCH_TOOL = {"type": "web_search_20250305", "name": "web_search"}
WEATHER = {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}
PAGES = [
    SearchResult("Paris", "https://en.example.org/paris", "Capital of France", "searxng", 1),
    SearchResult("Ads", "https://www.ads.example/paris", "Buy now", "searxng", 2),
    SearchResult("Wiki", "https://wiki.example/paris", "An article", "searxng", 3),
]


class Searcher:
    def __init__(self, pages: Sequence[SearchResult] = PAGES, fail: bool = False):
        self.pages = pages
        self.fail = fail
        self.queries: list[str] = []

    async def __call__(self, query: str, count: int) -> Sequence[SearchResult]:
        self.queries.append(query)
        if self.fail:
            raise BackendError("searxng", "down")
        return self.pages[:count]


def _body(**extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Who won?"}], **extra}


def _plan(searcher: Searcher, **extra: Any) -> tuple[dict[str, Any], SearchRun]:
    planned = WebSearch(searcher).plan(_body(**extra))
    assert planned is not None
    return planned


def _record() -> RequestRecord:
    return RequestRecord("req_1", "POST", "/v1/messages")


def _search_call(query: str, call_id: str = "call_1") -> dict[str, Any]:
    arguments = orjson.dumps({"query": query}).decode()
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "web_search", "arguments": arguments},
    }


def _answer(content: str | None, calls: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if calls:
        message["tool_calls"] = calls
    reason = "tool_calls" if calls else "stop"
    usage = {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "m",
        "choices": [{"index": 0, "message": message, "finish_reason": reason}],
        "usage": usage,
    }


class Model:
    """Answers with the scripted answers in turn, recording each body."""

    def __init__(self, record: RequestRecord, *answers: dict[str, Any]):
        self.record = record
        self.answers = list(answers)
        self.bodies: list[dict[str, Any]] = []

    async def __call__(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        answer = self.answers.pop(0)
        usage = answer["usage"]  # as the attempt accounts it
        self.record.usage = usage
        self.record.input_tokens = usage["prompt_tokens"]
        self.record.output_tokens = usage["completion_tokens"]
        self.record.cost_usd = 0.001
        return answer


# -- the plan ------------------------------------------------------------------


def test_anthropic_search_tools_become_a_function() -> None:
    body, run = _plan(
        Searcher(),
        tools=[WEATHER],
        **{ANTHROPIC_TOOLS: [{**SEARCH_TOOL, "max_uses": 3, "allowed_domains": ["Example.org"]}]},
    )

    assert ANTHROPIC_TOOLS not in body
    assert [t["function"]["name"] for t in body["tools"]] == ["weather", "web_search"]
    assert body["tools"][1]["function"]["parameters"]["required"] == ["query"]
    assert (run.max_uses, run.allowed_domains) == (3, ("example.org",))


def test_the_hosted_search_too_and_max_uses_is_capped() -> None:
    body, run = _plan(Searcher(), **{HOSTED_WEB_SEARCH: {"allowed_domains": ["a.example"]}})
    assert HOSTED_WEB_SEARCH not in body
    assert run.allowed_domains == ("a.example",)

    _, capped = _plan(Searcher(), **{ANTHROPIC_TOOLS: [{**SEARCH_TOOL, "max_uses": 99}]})
    assert capped.max_uses == MAX_USES_CAP


def test_other_anthropic_tools_are_not_planned() -> None:
    bash = {"type": "bash_20250124", "name": "bash"}
    assert not search_tools_only([SEARCH_TOOL, bash])
    assert WebSearch(Searcher()).plan(_body(**{ANTHROPIC_TOOLS: [SEARCH_TOOL, bash]})) is None
    assert WebSearch(Searcher()).plan(_body()) is None


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "web_search"}}]}, "tools"),
        ({"n": 2}, "n"),
    ],
)
def test_what_a_gateway_search_cannot_take_is_a_400(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        WebSearch(Searcher()).plan(_body(**extra, **{ANTHROPIC_TOOLS: [SEARCH_TOOL]}))
    assert caught.value.param == param


# -- answered whole ------------------------------------------------------------------


async def test_each_search_is_run_and_written_as_anthropic_blocks() -> None:
    searcher = Searcher()
    body, run = _plan(searcher, **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    model = Model(
        record,
        _answer("Let me look. ", [_search_call("winner 2026")]),
        _answer(None, [_search_call("final score", "call_2")]),
        _answer("France won."),
    )

    answer = await run.complete(body, model, record)

    assert searcher.queries == ["winner 2026", "final score"]
    message = answer["choices"][0]["message"]
    assert message["content"] == "Let me look. France won."
    assert "tool_calls" not in message
    blocks = message[CONTENT_BLOCKS]
    assert [b["type"] for b in blocks] == [
        "text",
        "server_tool_use",
        "web_search_tool_result",
        "server_tool_use",
        "web_search_tool_result",
        "text",
    ]
    assert blocks[1]["input"] == {"query": "winner 2026"}
    assert blocks[2]["tool_use_id"] == blocks[1]["id"]
    assert [r["url"] for r in blocks[2]["content"]] == [p.url for p in PAGES]
    # The model saw the results as its tool's answer, after its own call.
    second = model.bodies[1]["messages"]
    assert second[-2]["tool_calls"][0]["function"]["name"] == "web_search"
    assert second[-1]["role"] == "tool"
    assert orjson.loads(second[-1]["content"])[0] == {
        "title": "Paris",
        "url": "https://en.example.org/paris",
        "snippet": "Capital of France",
    }
    # Three rounds added up, and the searches counted.
    assert answer["usage"]["prompt_tokens"] == 30
    assert answer["usage"]["server_tool_use"] == {"web_search_requests": 2}
    assert (record.input_tokens, record.output_tokens) == (30, 6)
    assert record.cost_usd == pytest.approx(0.003)


async def test_past_max_uses_the_model_must_answer() -> None:
    searcher = Searcher()
    body, run = _plan(searcher, **{ANTHROPIC_TOOLS: [{**SEARCH_TOOL, "max_uses": 1}]})
    record = _record()
    model = Model(
        record,
        _answer(None, [_search_call("one")]),
        _answer("Done.", [_search_call("two", "call_2")]),  # asked not to, it tries anyway
    )

    answer = await run.complete(body, model, record)

    assert searcher.queries == ["one"]
    assert model.bodies[1]["tool_choice"] == "none"
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert "tool_calls" not in choice["message"]
    assert answer["usage"]["server_tool_use"] == {"web_search_requests": 1}


async def test_a_forced_search_is_forced_once() -> None:
    forced = {"type": "function", "function": {"name": "web_search"}}
    body, run = _plan(Searcher(), tool_choice=forced, **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    model = Model(record, _answer(None, [_search_call("q")]), _answer("Answer."))

    await run.complete(body, model, record)

    assert model.bodies[0]["tool_choice"] == forced
    assert model.bodies[1]["tool_choice"] == "auto"


async def test_a_required_tool_with_only_the_search_is_required_once() -> None:
    body, run = _plan(Searcher(), tool_choice="required", **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    model = Model(record, _answer(None, [_search_call("q")]), _answer("Answer."))
    await run.complete(body, model, record)
    assert [b["tool_choice"] for b in model.bodies] == ["required", "auto"]

    # With a client tool of its own, a tool is still required of it.
    body, run = _plan(
        Searcher(), tools=[WEATHER], tool_choice="required", **{ANTHROPIC_TOOLS: [SEARCH_TOOL]}
    )
    model = Model(record, _answer(None, [_search_call("q")]), _answer("Answer."))
    await run.complete(body, model, record)
    assert [b["tool_choice"] for b in model.bodies] == ["required", "required"]


async def test_a_client_tool_call_ends_the_answer() -> None:
    body, run = _plan(Searcher(), tools=[WEATHER], **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    weather = {
        "id": "call_w",
        "type": "function",
        "function": {"name": "weather", "arguments": "{}"},
    }
    model = Model(record, _answer(None, [_search_call("q"), weather]))

    answer = await run.complete(body, model, record)

    choice = answer["choices"][0]
    assert choice["message"]["tool_calls"] == [weather]
    assert choice["finish_reason"] == "tool_calls"
    assert len(model.bodies) == 1


async def test_a_failed_search_is_an_error_block_and_the_model_is_told() -> None:
    body, run = _plan(Searcher(fail=True), **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    model = Model(record, _answer(None, [_search_call("q")]), _answer("It failed."))

    answer = await run.complete(body, model, record)

    result = answer["choices"][0]["message"][CONTENT_BLOCKS][1]
    assert result["content"] == {
        "type": "web_search_tool_result_error",
        "error_code": "unavailable",
    }
    assert "failed" in model.bodies[1]["messages"][-1]["content"]


async def test_domain_filters_choose_the_pages() -> None:
    wish = {**SEARCH_TOOL, "blocked_domains": ["ads.example"]}
    body, run = _plan(Searcher(), **{ANTHROPIC_TOOLS: [wish]})
    record = _record()
    model = Model(record, _answer(None, [_search_call("q")]), _answer("x"))
    answer = await run.complete(body, model, record)
    urls = [r["url"] for r in answer["choices"][0]["message"][CONTENT_BLOCKS][1]["content"]]
    assert urls == ["https://en.example.org/paris", "https://wiki.example/paris"]

    wish = {**SEARCH_TOOL, "allowed_domains": ["example.org"]}
    body, run = _plan(Searcher(), **{ANTHROPIC_TOOLS: [wish]})
    model = Model(record, _answer(None, [_search_call("q")]), _answer("x"))
    answer = await run.complete(body, model, record)
    urls = [r["url"] for r in answer["choices"][0]["message"][CONTENT_BLOCKS][1]["content"]]
    assert urls == ["https://en.example.org/paris"]


async def test_no_search_no_blocks() -> None:
    body, run = _plan(Searcher(), **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    answer = await run.complete(body, Model(record, _answer("Hi.")), record)
    assert CONTENT_BLOCKS not in answer["choices"][0]["message"]
    assert "server_tool_use" not in answer["usage"]


# -- streamed ------------------------------------------------------------------


def _chunk(delta: dict[str, Any], reason: str | None = None, **extra: Any) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": reason}
    return orjson.dumps({"id": extra.pop("id", "c1"), "model": "m", "choices": [choice], **extra})


def _usage_chunk(prompt: int) -> bytes:
    usage = {"prompt_tokens": prompt, "completion_tokens": 1, "total_tokens": prompt + 1}
    return orjson.dumps({"id": "c", "model": "m", "choices": [], "usage": usage})


def _call_chunks(index: int, call_id: str, name: str, arguments: str) -> list[bytes]:
    opened = {"index": index, "id": call_id, "type": "function"}
    half = len(arguments) // 2
    return [
        _chunk({"tool_calls": [{**opened, "function": {"name": name, "arguments": ""}}]}),
        _chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[:half]}}]}),
        _chunk({"tool_calls": [{"index": index, "function": {"arguments": arguments[half:]}}]}),
    ]


class Rounds:
    """Each round's chunks in turn, the record accounted as the watch does."""

    def __init__(self, record: RequestRecord, *rounds: list[bytes]):
        self.record = record
        self.rounds = list(rounds)
        self.bodies: list[dict[str, Any]] = []
        self.closed = 0

    async def chunks(self, chunks: list[bytes]) -> AsyncIterator[bytes]:
        try:
            for raw in chunks:
                parsed = orjson.loads(raw)
                if parsed.get("usage"):
                    self.record.usage = parsed["usage"]
                    self.record.input_tokens = parsed["usage"]["prompt_tokens"]
                    self.record.output_tokens = parsed["usage"]["completion_tokens"]
                yield raw
        finally:
            self.closed += 1

    async def again(self, body: dict[str, Any]) -> tuple[bytes | None, AsyncIterator[bytes]]:
        self.bodies.append(body)
        return None, self.chunks(self.rounds.pop(0))


async def _read(stream: AsyncIterator[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(raw) async for raw in stream]


def _deltas(chunks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [c["choices"][0]["delta"] for c in chunks if c.get("choices")]


async def test_a_stream_runs_its_searches_between_rounds() -> None:
    searcher = Searcher()
    body, run = _plan(searcher, **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    first_round = [
        _chunk({"role": "assistant", "content": ""}, id="round-1"),
        _chunk({"content": "Looking. "}),
        *_call_chunks(0, "call_1", "web_search", '{"query": "winner"}'),
        _chunk({}, "tool_calls"),
        _usage_chunk(10),
    ]
    second_round = [
        _chunk({"role": "assistant", "content": ""}, id="round-2"),
        _chunk({"content": "France "}),
        _chunk({"content": "won."}),
        _chunk({}, "stop"),
        _usage_chunk(20),
    ]
    rounds = Rounds(record, second_round)
    first = rounds.chunks(first_round)

    chunks = await _read(run.stream(body, None, first, rounds.again, record))

    assert searcher.queries == ["winner"]
    assert {c["id"] for c in chunks} == {"round-1"}  # one answer, one id
    deltas = _deltas(chunks)
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1] == {"content": "Looking. "}
    use, result = deltas[2][ANTHROPIC_BLOCK], deltas[3][ANTHROPIC_BLOCK]
    assert (use["type"], use["input"]) == ("server_tool_use", {"query": "winner"})
    assert (result["type"], result["tool_use_id"]) == ("web_search_tool_result", use["id"])
    assert deltas[4] == {ANTHROPIC_TEXT: True}  # the next round's text is a block of its own
    assert deltas[5:7] == [{"content": "France "}, {"content": "won."}]
    assert [c["choices"][0]["finish_reason"] for c in chunks if c.get("choices")][-1] == "stop"
    # No search call reached the client, and the second round was asked with the results.
    assert not any("tool_calls" in d for d in deltas)
    assert rounds.bodies[0]["messages"][-1]["role"] == "tool"
    assert rounds.bodies[0]["messages"][-2]["content"] == "Looking. "
    # Both rounds counted, in the record and in the one usage chunk at the end.
    assert chunks[-1]["usage"]["prompt_tokens"] == 30
    assert chunks[-1]["usage"]["server_tool_use"] == {"web_search_requests": 1}
    assert record.input_tokens == 30
    assert rounds.closed == 2


async def test_a_streamed_client_call_ends_the_answer_with_its_own_index() -> None:
    body, run = _plan(Searcher(), tools=[WEATHER], **{ANTHROPIC_TOOLS: [SEARCH_TOOL]})
    record = _record()
    only_round = [
        _chunk({"role": "assistant", "content": ""}),
        *_call_chunks(0, "call_1", "web_search", '{"query": "q"}'),
        *_call_chunks(1, "call_2", "weather", "{}"),
        _chunk({}, "tool_calls"),
    ]
    rounds = Rounds(record)

    chunks = await _read(run.stream(body, None, rounds.chunks(only_round), rounds.again, record))

    pieces = [p for d in _deltas(chunks) for p in d.get("tool_calls", ())]
    assert {p["index"] for p in pieces} == {0}
    assert pieces[0]["function"]["name"] == "weather"
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"
    assert rounds.bodies == []


def test_chats_own_option_is_planned_and_markers_only_where_an_edge_set_them() -> None:
    body, run = _plan(Searcher(), web_search_options={"search_context_size": "low"})
    assert "web_search_options" not in body
    assert body["tools"][-1]["function"]["name"] == "web_search"
    assert run.max_uses > 0

    # A chat body cannot bring the edges' markers in.
    sent = _body(**{ANTHROPIC_TOOLS: [SEARCH_TOOL], HOSTED_WEB_SEARCH: {}})
    assert WebSearch(Searcher()).plan(sent, markers=False) is None


async def test_each_search_is_watched_to_its_outcome() -> None:
    seen: list[tuple[str, str]] = []

    def watch(record: RequestRecord) -> Callable[[str], None]:
        return lambda outcome: seen.append((record.request_id, outcome))

    for searcher in (Searcher(), Searcher(pages=[]), Searcher(fail=True)):
        planned = WebSearch(searcher, watch).plan(_body(**{ANTHROPIC_TOOLS: [SEARCH_TOOL]}))
        assert planned is not None
        body, run = planned
        record = _record()
        model = Model(record, _answer(None, [_search_call("q")]), _answer("x"))
        await run.complete(body, model, record)
    assert seen == [("req_1", "ok"), ("req_1", "empty"), ("req_1", "failed")]
