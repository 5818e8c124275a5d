from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from interlock.config import DeploymentConfig
from interlock.errors import UpstreamConnectionError, UpstreamStatusError, UpstreamTimeout
from interlock.providers.base import CallContext
from interlock.providers.simulator import SimulatorProvider
from interlock.tokens import EstimatingCounter

CTX = CallContext(request_id="req_t", public_model="sim")
BODY = {"model": "sim", "messages": [{"role": "user", "content": "hello there"}]}


class FakeSleep:
    """Records requested delays instead of sleeping."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make(sleep: FakeSleep | None = None, **params: Any) -> SimulatorProvider:
    deployment = DeploymentConfig(id="sim-1", provider="simulator", params=params)
    return SimulatorProvider(
        deployment, EstimatingCounter(), sleep=sleep or FakeSleep(), rng=random.Random(1)
    )


async def collect(provider: SimulatorProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(c) async for c in provider.stream_chat(body, CTX)]


async def test_same_seed_and_prompt_give_same_text() -> None:
    a = await make(seed=3).chat(BODY, CTX)
    b = await make(seed=3).chat(BODY, CTX)
    c = await make(seed=4).chat(BODY, CTX)
    other = await make(seed=3).chat({**BODY, "messages": [{"role": "user", "content": "x"}]}, CTX)
    text = a["choices"][0]["message"]["content"]
    assert text == b["choices"][0]["message"]["content"]
    assert text != c["choices"][0]["message"]["content"]
    assert text != other["choices"][0]["message"]["content"]
    assert a["system_fingerprint"] == "interlock-simulator"


async def test_max_tokens_caps_length_and_reports_length() -> None:
    result = await make(max_tokens=50).chat({**BODY, "max_tokens": 3}, CTX)
    assert len(result["choices"][0]["message"]["content"].split()) == 3
    assert result["choices"][0]["finish_reason"] == "length"


async def test_stop_sequence_truncates() -> None:
    full = (await make(max_tokens=20).chat(BODY, CTX))["choices"][0]["message"]["content"]
    word = full.split()[3]
    result = await make(max_tokens=20).chat({**BODY, "stop": [" " + word]}, CTX)
    assert result["choices"][0]["message"]["content"] == full[: full.find(" " + word)]
    assert result["choices"][0]["finish_reason"] == "stop"


async def test_stream_matches_unary_and_paces_with_injected_sleep() -> None:
    sleep = FakeSleep()
    provider = make(sleep, ttft_ms=100, tokens_per_s=10, max_tokens=5)
    body = {**BODY, "stream_options": {"include_usage": True}}
    chunks = await collect(provider, body)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    unary = await make(max_tokens=5).chat(BODY, CTX)
    assert text == unary["choices"][0]["message"]["content"]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])
    tokens = len(text.split())
    assert sleep.delays[0] == pytest.approx(0.1)
    assert sleep.delays[1:] == [pytest.approx(0.1)] * (tokens - 1)


async def test_n_choices() -> None:
    result = await make().chat({**BODY, "n": 3}, CTX)
    assert [c["index"] for c in result["choices"]] == [0, 1, 2]
    chunks = await collect(make(), {**BODY, "n": 2})
    assert {c["choices"][0]["index"] for c in chunks} == {0, 1}


@pytest.mark.parametrize(
    ("kind", "error", "status"),
    [
        ("server_error", UpstreamStatusError, 502),
        ("rate_limit", UpstreamStatusError, 429),
        ("bad_request", UpstreamStatusError, 400),
        ("timeout", UpstreamTimeout, 504),
        ("connection", UpstreamConnectionError, 502),
    ],
)
async def test_error_kinds(kind: str, error: type[Exception], status: int) -> None:
    provider = make(error_rate=1.0, error_kind=kind)
    with pytest.raises(error) as info:
        await provider.chat(BODY, CTX)
    assert info.value.status_code == status
    assert provider.calls == 1 and provider.failures == 1


async def test_error_rate_is_a_probability() -> None:
    provider = make(error_rate=0.5)
    for _ in range(200):
        try:
            await provider.chat(BODY, CTX)
        except UpstreamStatusError:
            pass
    assert provider.calls == 200 and 60 < provider.failures < 140


async def test_mid_stream_cut() -> None:
    provider = make(cut_after_tokens=2, max_tokens=10)
    seen = []
    with pytest.raises(UpstreamConnectionError):
        async for chunk in provider.stream_chat(BODY, CTX):
            seen.append(orjson.loads(chunk))
    content = [c for c in seen if c["choices"][0]["delta"].get("content")]
    assert len(content) == 2


async def test_embeddings_are_deterministic_unit_vectors() -> None:
    provider = make(dimensions=16)
    body = {"model": "e", "input": ["a", "b", "a"]}
    result = await provider.embed(body, CTX)
    vectors = [d["embedding"] for d in result["data"]]
    assert len(vectors[0]) == 16 and vectors[0] == vectors[2] != vectors[1]
    assert sum(v * v for v in vectors[0]) == pytest.approx(1.0)
    assert (await provider.embed({"input": "a", "dimensions": 4}, CTX))["data"][0]["embedding"]
    tokens = await provider.embed({"input": [1, 2, 3]}, CTX)
    assert len(tokens["data"]) == 1
