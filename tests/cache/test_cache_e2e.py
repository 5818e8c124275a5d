"""The response cache through a live gateway, against a counting upstream.

Every test drives real HTTP (httpx, or the official ``openai`` SDK) at a
gateway in front of an OpenAI-compatible upstream that counts what reaches
it, so "served from the cache" means "the upstream never saw it".
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from interlock.app import create_app
from interlock.config import parse_config
from tests.support.redis_scratch import scratch_prefix
from tests.support.servers import FakeUpstream, GatewayProcess, InProcessGateway

ALICE, BOB, ADMIN = "sk-alice-cache", "sk-bob-cache", "sk-admin-cache"
REDIS_URL = "redis://127.0.0.1:6379/12"
ANSWER = "The quick brown fox jumps over the lazy dog, and the cache replays it word by word."
USAGE = {"prompt_tokens": 13, "completion_tokens": 17, "total_tokens": 30}
CHUNK_DELAY_S = 0.03  # 17 words: a stream lasts ~0.5 s, so concurrent requests overlap


def chat(prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "chat",
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        **extra,
    }


def vector(text: str) -> list[float]:
    """The upstream's embedding: distinct per test word, so order errors show."""
    return [float(ord(c)) for c in text[:3]] + [float(len(text))]


class Upstream:
    """An OpenAI-compatible upstream that counts what reaches it.

    Answers are numbered (``Answer #n``), so a test can tell a replay from a
    fresh answer; a stream sends one word every ``CHUNK_DELAY_S``.
    """

    def __init__(self) -> None:
        self.url = ""  # set once served
        self.chat_calls = 0
        self.embedding_inputs: list[list[str]] = []
        self.lock = threading.Lock()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.chat)
        self.app.router.add_post("/v1/embeddings", self.embeddings)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        with self.lock:
            self.chat_calls += 1
            text = f"Answer #{self.chat_calls}: {ANSWER}"
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            return web.json_response(
                {
                    "id": "chatcmpl-up",
                    "object": "chat.completion",
                    "created": 1,
                    "model": "up-model",
                    "choices": [choice],
                    "usage": USAGE,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        words = text.split(" ")
        deltas = [{"role": "assistant", "content": ""}]
        deltas += [{"content": w if i == 0 else " " + w} for i, w in enumerate(words)]
        for delta in deltas:
            await response.write(_event(_chunk([{"index": 0, "delta": delta}])))
            await asyncio.sleep(CHUNK_DELAY_S)
        finish = {"index": 0, "delta": {}, "finish_reason": "stop"}
        await response.write(_event(_chunk([finish])))
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(_event(_chunk([], USAGE)))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        with self.lock:
            self.embedding_inputs.append(inputs)
        data = [
            {"object": "embedding", "index": i, "embedding": vector(text)}
            for i, text in enumerate(inputs)
        ]
        usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
        return web.json_response(
            {"object": "list", "data": data, "model": "up-embed", "usage": usage}
        )


def _chunk(choices: list[dict[str, Any]], usage: dict[str, Any] | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "up-model",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return orjson.dumps(chunk)


def _event(data: bytes) -> bytes:
    return b"data: " + data + b"\n\n"


def events(raw: bytes) -> list[bytes]:
    """The ``data:`` payloads of an SSE body, ``[DONE]`` included."""
    return [block[6:] for block in raw.split(b"\n\n") if block.startswith(b"data: ")]


def text_of(payloads: list[bytes]) -> str:
    chunks = [orjson.loads(p) for p in payloads if p != b"[DONE]"]
    return "".join(c["delta"].get("content") or "" for k in chunks for c in k["choices"])


def config(url: str, **cache: Any) -> dict[str, Any]:
    def model(name: str) -> dict[str, Any]:
        deployment = {"id": name, "provider": "openai", "model": name, "base_url": url + "/v1"}
        return {"name": name, "deployments": [deployment]}

    return {
        "models": [model("chat"), model("embed")],
        "keys": [{"name": "alice", "key": ALICE}, {"name": "bob", "key": BOB}],
        "server": {"access_log": False, "admin_key": ADMIN},
        "cache": {"enabled": True, **cache},
    }


def auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@pytest.fixture
def upstream(fake_upstream: Callable[[web.Application], FakeUpstream]) -> Upstream:
    counting = Upstream()
    counting.url = fake_upstream(counting.app).url
    return counting


@pytest.fixture
def gateway_for(upstream: Upstream) -> Iterator[Callable[..., str]]:
    """Start an in-process gateway with these ``cache`` settings; its base URL."""
    started: list[InProcessGateway] = []

    def start(**cache: Any) -> str:
        raw = config(upstream.url, **cache)
        gateway = InProcessGateway(create_app(parse_config(raw, env={})))
        started.append(gateway)
        return gateway.base_url

    yield start
    for gateway in started:
        gateway.close()


async def _streams(url: str, body: dict[str, Any], count: int) -> list[tuple[str, bytes]]:
    """``count`` identical streams at once: (x-interlock-cache, SSE body) each."""
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(headers=auth(ALICE), timeout=10, limits=limits) as client:

        async def one() -> tuple[str, bytes]:
            response = await client.post(url + "/v1/chat/completions", json=body)
            assert response.status_code == 200, response.text
            return response.headers.get("x-interlock-cache", ""), response.content

        return await asyncio.gather(*(one() for _ in range(count)))


def test_fifty_identical_streams_reach_the_upstream_once(
    upstream: Upstream, gateway_for: Callable[..., str]
) -> None:
    url = gateway_for()
    body = chat("tell me", stream=True, stream_options={"include_usage": True})
    results = asyncio.run(_streams(url, body, 50))
    assert upstream.chat_calls == 1
    statuses = [status for status, _ in results]
    assert statuses.count("miss") == 1
    assert set(statuses) <= {"miss", "coalesced", "hit"}
    leader = next(raw for status, raw in results if status == "miss")
    expected = f"Answer #1: {ANSWER}"
    for status, raw in results:
        payloads = events(raw)
        assert payloads[-1] == b"[DONE]"
        assert text_of(payloads) == expected
        final = orjson.loads(payloads[-2])
        assert final["choices"] == [] and final["usage"] == USAGE
        finish = [c.get("finish_reason") for p in payloads[:-2] for c in orjson.loads(p)["choices"]]
        assert [f for f in finish if f] == ["stop"]
        if status == "coalesced":
            assert raw == leader  # the very same chunk sequence, byte for byte


def test_openai_sdk_parses_hits_streamed_and_not(
    upstream: Upstream, gateway_for: Callable[..., str]
) -> None:
    url = gateway_for()
    messages: Any = [{"role": "user", "content": "sdk"}]
    with openai.OpenAI(base_url=url + "/v1", api_key=ALICE, max_retries=0) as client:
        create = client.chat.completions.with_raw_response.create
        filled = create(model="chat", messages=messages, temperature=0)
        assert filled.headers["x-interlock-cache"] == "miss"
        first = filled.parse()
        raw = create(model="chat", messages=messages, temperature=0)
        assert raw.headers["x-interlock-cache"] == "hit"
        hit = raw.parse()
        assert hit.choices[0].message.content == first.choices[0].message.content
        assert hit.choices[0].finish_reason == "stop"
        assert hit.usage == first.usage and hit.usage is not None
        assert hit.usage.total_tokens == USAGE["total_tokens"]  # the original usage

        raw_stream = create(
            model="chat",
            messages=messages,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert raw_stream.headers["x-interlock-cache"] == "hit"
        chunks = list(raw_stream.parse())
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text == first.choices[0].message.content
        finish = [c.choices[0].finish_reason for c in chunks if c.choices]
        assert [f for f in finish if f] == ["stop"]
        assert chunks[-1].choices == [] and chunks[-1].usage == first.usage

        # And the other way round: a stream fills, a plain request replays it.
        streamed = client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "sdk 2"}],
            temperature=0,
            stream=True,
        )
        streamed_text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        replay = create(
            model="chat", messages=[{"role": "user", "content": "sdk 2"}], temperature=0
        )
        assert replay.headers["x-interlock-cache"] == "hit"
        assert replay.parse().choices[0].message.content == streamed_text
    assert upstream.chat_calls == 2


def test_streamed_hits_and_followers_are_accounted_like_unary_hits(
    upstream: Upstream, tmp_path: Path
) -> None:
    """Ledger and access log: a request served without an upstream call has
    the original answer's tokens at no cost, streamed or not, whether or not
    its client asked for the usage chunk."""
    raw = config(upstream.url)
    raw["models"][0]["deployments"][0]["price"] = {
        "input_per_million": 1_000_000,
        "output_per_million": 2_000_000,
    }
    raw["server"]["access_log"] = True
    raw["store"] = {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"}
    log = io.BytesIO()
    gateway = InProcessGateway(create_app(parse_config(raw, env={}), log_stream=log))
    try:
        url = gateway.base_url
        with_usage = chat("acct", stream=True, stream_options={"include_usage": True})
        without_usage = chat("acct", stream=True)

        async def burst() -> list[tuple[str, bytes]]:
            both = await asyncio.gather(
                _streams(url, with_usage, 3), _streams(url, without_usage, 3)
            )
            return both[0] + both[1]

        seen = [status for status, _ in asyncio.run(burst())]
        with httpx.Client(base_url=url, headers=auth(ALICE), timeout=10) as client:
            replay = client.post("/v1/chat/completions", json=without_usage)
            unary = client.post("/v1/chat/completions", json=chat("acct"))
            seen += [replay.headers["x-interlock-cache"], unary.headers["x-interlock-cache"]]
            assert seen.count("miss") == 1 and "coalesced" in seen and seen[-2:] == ["hit", "hit"]
            assert upstream.chat_calls == 1
            miss_cost = USAGE["prompt_tokens"] * 1.0 + USAGE["completion_tokens"] * 2.0
            expected = {
                "requests": 8,
                "prompt_tokens": 8 * USAGE["prompt_tokens"],
                "completion_tokens": 8 * USAGE["completion_tokens"],
                "cost_usd": pytest.approx(miss_cost),  # only the miss cost anything
            }
            deadline = time.monotonic() + 5  # the ledger is written in batches
            while True:
                rows = client.get("/admin/usage?key=alice", headers=auth(ADMIN)).json()["data"]
                got = {name: rows[0][name] for name in expected} if rows else {}
                if got == expected or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            assert got == expected
    finally:
        gateway.close()
    lines = [orjson.loads(line) for line in log.getvalue().splitlines()]
    chats = [line for line in lines if line.get("path") == "/v1/chat/completions"]
    assert sorted(line["cache"] for line in chats) == sorted(seen)
    for line in chats:
        tokens = (line.get("input_tokens"), line.get("output_tokens"))
        assert tokens == (USAGE["prompt_tokens"], USAGE["completion_tokens"]), line
        assert line["cost_usd"] == (miss_cost if line["cache"] == "miss" else 0.0), line


@pytest.mark.parametrize("shared", [False, True])
def test_one_tenant_never_reads_another_unless_shared(
    upstream: Upstream, gateway_for: Callable[..., str], shared: bool
) -> None:
    url = gateway_for(**({"shared_namespace": "team"} if shared else {}))
    with httpx.Client(base_url=url, timeout=10) as client:

        def ask(key: str) -> httpx.Response:
            response = client.post("/v1/chat/completions", json=chat("q"), headers=auth(key))
            assert response.status_code == 200
            return response

        first = ask(ALICE)
        assert first.headers["x-interlock-cache"] == "miss"
        assert ask(ALICE).headers["x-interlock-cache"] == "hit"
        other = ask(BOB)
    if shared:
        assert other.headers["x-interlock-cache"] == "hit"
        assert other.json()["choices"][0]["message"]["content"].startswith("Answer #1")
        assert upstream.chat_calls == 1
    else:
        assert other.headers["x-interlock-cache"] == "miss"
        assert other.json()["choices"][0]["message"]["content"].startswith("Answer #2")
        assert upstream.chat_calls == 2


def test_cache_control_no_store_and_no_cache(
    upstream: Upstream, gateway_for: Callable[..., str]
) -> None:
    url = gateway_for()
    with httpx.Client(base_url=url, headers=auth(ALICE), timeout=10) as client:

        def ask(prompt: str, control: str | None = None) -> tuple[str | None, str]:
            headers = {"cache-control": control} if control else {}
            response = client.post("/v1/chat/completions", json=chat(prompt), headers=headers)
            assert response.status_code == 200
            content = response.json()["choices"][0]["message"]["content"]
            return response.headers.get("x-interlock-cache"), content.split(":")[0]

        # no-store: no lookup (upstream called although cached), no fill.
        assert ask("a") == ("miss", "Answer #1")
        assert ask("a", "no-store") == (None, "Answer #2")  # the cache stayed out
        assert ask("a") == ("hit", "Answer #1")  # #2 was not stored
        assert ask("b", "no-store") == (None, "Answer #3")
        assert ask("b") == ("miss", "Answer #4")
        # no-cache: no lookup, but the fresh answer replaces the stored one.
        assert ask("a", "no-cache") == ("miss", "Answer #5")
        assert ask("a") == ("hit", "Answer #5")
    assert upstream.chat_calls == 5


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    with scratch_prefix(REDIS_URL, "cache") as prefix:
        yield prefix


def test_invalidation_on_one_instance_reaches_the_other(
    upstream: Upstream,
    start_gateway: Callable[..., GatewayProcess],
    redis_prefix: str,
) -> None:
    raw = config(upstream.url)
    raw["state"] = {"backend": "redis", "url": REDIS_URL, "prefix": redis_prefix}
    first, second = start_gateway(raw), start_gateway(raw)
    with httpx.Client(headers=auth(ALICE), timeout=10) as client:

        def ask(gateway: GatewayProcess) -> str:
            response = client.post(gateway.base_url + "/v1/chat/completions", json=chat("x"))
            assert response.status_code == 200
            return response.headers["x-interlock-cache"]

        assert ask(first) == "miss"
        assert ask(second) == "hit"  # from the shared tier
        assert ask(second) == "hit"  # now from its own
        assert upstream.chat_calls == 1
        deleted = client.delete(
            first.base_url + "/admin/cache", params={"model": "chat"}, headers=auth(ADMIN)
        )
        assert deleted.status_code == 200, deleted.text
        invalidated_at = time.monotonic()
        while ask(second) == "hit":
            assert time.monotonic() - invalidated_at < 1.5, "the other instance still hits"
            time.sleep(0.05)
    assert upstream.chat_calls == 2


def test_cache_header_is_set_when_the_wait_for_another_instance_outlasts_heartbeat_after(
    upstream: Upstream, redis_prefix: str
) -> None:
    """The second instance waits (remote_wait_s) for the first one's answer
    longer than heartbeat_after_s: its response must still say how it was served."""
    raw = config(upstream.url)
    raw["state"] = {"backend": "redis", "url": REDIS_URL, "prefix": redis_prefix}
    raw["models"][0]["routing"] = {"heartbeat_after_s": 0.05, "heartbeat_interval_s": 0.05}
    first, second = (InProcessGateway(create_app(parse_config(raw, env={}))) for _ in range(2))
    body = chat("heartbeat", stream=True)

    async def both() -> list[tuple[str | None, bytes, float]]:
        async with httpx.AsyncClient(headers=auth(ALICE), timeout=10) as client:

            async def ask(url: str) -> tuple[str | None, bytes, float]:
                began = time.monotonic()
                response = await client.post(url + "/v1/chat/completions", json=body)
                assert response.status_code == 200, response.text
                took = time.monotonic() - began
                return response.headers.get("x-interlock-cache"), response.content, took

            leader = asyncio.create_task(ask(first.base_url))
            async with asyncio.timeout(5):
                # Until the first instance holds the lock and has called upstream
                # (a counter bumped on the upstream's thread, so polling).
                while upstream.chat_calls == 0:  # noqa: ASYNC110
                    await asyncio.sleep(0.005)
            return [await ask(second.base_url), await leader]

    try:
        (waited, waited_raw, waited_s), (led, led_raw, _) = asyncio.run(both())
    finally:
        first.close()
        second.close()
    assert upstream.chat_calls == 1
    assert waited_s > 0.2  # the wait (about one upstream stream) outlasted heartbeat_after_s
    assert (led, waited) == ("miss", "coalesced")
    assert text_of(events(waited_raw)) == text_of(events(led_raw)) == f"Answer #1: {ANSWER}"


def test_embeddings_send_only_the_uncached_inputs(
    upstream: Upstream, gateway_for: Callable[..., str]
) -> None:
    url = gateway_for()
    with httpx.Client(base_url=url, headers=auth(ALICE), timeout=10) as client:

        def embed(inputs: list[str]) -> httpx.Response:
            response = client.post("/v1/embeddings", json={"model": "embed", "input": inputs})
            assert response.status_code == 200
            data = response.json()["data"]
            assert [item["index"] for item in data] == list(range(len(inputs)))
            assert [item["embedding"] for item in data] == [vector(t) for t in inputs]
            return response

        assert embed(["alpha", "bravo"]).headers["x-interlock-cache"] == "miss"
        mixed = embed(["charlie", "alpha", "delta", "bravo"])
        assert mixed.headers["x-interlock-cache"] == "partial"
        assert embed(["bravo", "delta", "alpha"]).headers["x-interlock-cache"] == "hit"
    assert upstream.embedding_inputs == [["alpha", "bravo"], ["charlie", "delta"]]


def _cache_metric(url: str) -> dict[str, float]:
    text = httpx.get(url + "/metrics").text
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "interlock_cache_requests_total"
    }


def test_metrics_count_hits_misses_and_coalesced(
    upstream: Upstream, gateway_for: Callable[..., str]
) -> None:
    url = gateway_for()
    body = chat("metrics", stream=True)
    seen = [status for status, _ in asyncio.run(_streams(url, body, 8))]
    with httpx.Client(base_url=url, headers=auth(ALICE), timeout=10) as client:
        for _ in range(2):
            seen.append(
                client.post("/v1/chat/completions", json=chat("metrics")).headers[
                    "x-interlock-cache"
                ]
            )
    assert seen.count("miss") == 1 and "coalesced" in seen and seen[-2:] == ["hit", "hit"]
    expected = {status: float(seen.count(status)) for status in set(seen)}
    deadline = time.monotonic() + 2  # a stream is counted just after its last byte
    while (counted := _cache_metric(url)) != expected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert counted == expected
