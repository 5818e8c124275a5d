"""The pipeline without HTTP: an edge builds a ``ModelRequest`` and runs it.

This is the shape every edge takes (``api/chat.py``, ``api/embeddings.py``),
and the one the search service and batch workers will: the pipeline returns
values, and holds what admission took exactly as long as the answer lasts.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from interlock.app import Gateway, build_gateway
from interlock.config import parse_config
from interlock.errors import (
    AuthenticationFailed,
    InvalidRequest,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
)
from interlock.pipeline import ChatStream, ModelRequest, Operation, RequestOptions
from interlock.telemetry.record import RequestRecord
from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import FakeUpstream
from tests.support.sse import stream_one_chunk

BEARER = f"Bearer {TEST_KEY}"
CHAT = {"model": "sim", "messages": [{"role": "user", "content": "hello"}]}


def _gateway(**sections: Any) -> Gateway:
    raw = {**simulator_config(tokens_per_s=0, max_tokens=8), **sections}
    raw["server"] = {"access_log": False}
    return build_gateway(parse_config(raw, env={"TEST_KEY": TEST_KEY}))


def _request(
    body: dict[str, Any],
    operation: Operation = Operation.CHAT,
    authorization: str | None = BEARER,
    options: RequestOptions | None = None,
) -> ModelRequest:
    record = RequestRecord("req_test", "POST", f"/v1/{operation}")
    return ModelRequest(operation, body, record, authorization, options or RequestOptions())


def _slots_taken(gateway: Gateway) -> int:
    return gateway.services.pipeline.admission.in_flight.in_flight


async def _read(stream: ChatStream) -> list[dict[str, Any]]:
    ticks = [tick async for tick in stream.opening()]
    assert ticks == []
    chunks = [] if stream.first is None else [orjson.loads(stream.first)]
    chunks += [orjson.loads(chunk) async for chunk in stream.chunks]
    return chunks


async def test_a_chat_request_is_answered_as_a_value() -> None:
    gateway = _gateway()
    async with gateway.lifespan():
        request = _request(dict(CHAT))
        answer = await gateway.services.pipeline.run(request)
        assert isinstance(answer, dict) and answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["content"]
        assert _slots_taken(gateway) == 0
        stages = request.record.stages
        assert {"admission", "validation", "routing", "upstream"} <= stages.keys()
        assert request.record.key_name == "test" and request.record.model == "sim"


async def test_embeddings_come_back_as_floats_for_the_edge_to_encode() -> None:
    gateway = _gateway()
    async with gateway.lifespan():
        body = {"model": "embed", "input": ["a", "b"], "encoding_format": "base64"}
        answer = await gateway.services.pipeline.run(_request(body, Operation.EMBEDDINGS))
        assert isinstance(answer, dict)
        vectors = [item["embedding"] for item in answer["data"]]
        assert [len(v) for v in vectors] == [8, 8]
        assert all(isinstance(x, float) for x in vectors[0])


async def test_a_stream_holds_its_in_flight_slot_until_it_closes() -> None:
    gateway = _gateway()
    async with gateway.lifespan():
        stream = await gateway.services.pipeline.run(_request({**CHAT, "stream": True}))
        assert isinstance(stream, ChatStream)
        assert _slots_taken(gateway) == 1
        chunks = await _read(stream)
        assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
        assert not any(chunk.get("usage") for chunk in chunks)  # not asked for
        assert _slots_taken(gateway) == 1
        await stream.aclose()
        assert _slots_taken(gateway) == 0


async def test_a_caller_without_a_valid_key_learns_nothing_about_its_body() -> None:
    """401 before 400, as OpenAI answers; and no slot was taken."""
    gateway = _gateway()
    async with gateway.lifespan():
        pipeline = gateway.services.pipeline
        with pytest.raises(AuthenticationFailed):
            await pipeline.run(_request({"model": 7}, authorization="Bearer wrong"))
        with pytest.raises(InvalidRequest) as invalid:
            await pipeline.run(_request({"model": 7}))
        assert invalid.value.param == "model"
        assert _slots_taken(gateway) == 0


async def test_an_unknown_model_names_no_request() -> None:
    """A model the gateway does not serve never becomes the record's model:
    that would be a new metrics series (and ledger value) per name a client
    makes up (tests/reliability/test_memory_flat.py found it)."""
    gateway = _gateway()
    async with gateway.lifespan():
        request = _request({"model": "made-up-1", "messages": [{"role": "user", "content": "x"}]})
        with pytest.raises(ModelNotFound):
            await gateway.services.pipeline.run(request)
    assert request.record.model is None


async def test_permissions_are_checked_at_admission() -> None:
    keys = [{"name": "test", "key": "os.environ/TEST_KEY", "allowed_models": ["embed"]}]
    gateway = _gateway(keys=keys)
    async with gateway.lifespan():
        pipeline = gateway.services.pipeline
        with pytest.raises(PermissionDenied, match="may not use the model `sim`"):
            await pipeline.run(_request(dict(CHAT)))
        forced = RequestOptions(forced="sim-1")
        body = {"model": "embed", "input": "x"}
        with pytest.raises(PermissionDenied, match="force_deployment"):
            await pipeline.run(_request(body, Operation.EMBEDDINGS, options=forced))
        assert _slots_taken(gateway) == 0


async def test_a_shed_request_spends_none_of_its_keys_limits() -> None:
    """Load shedding comes before the rate limits: with rpm 2, a stream, a
    request shed while it runs, then one more request are all within limits."""
    keys = [{"name": "test", "key": "os.environ/TEST_KEY", "limits": {"rpm": 2}}]
    gateway = _gateway(keys=keys, limits={"max_in_flight": 1, "max_queue": 0})
    async with gateway.lifespan():
        pipeline = gateway.services.pipeline
        stream = await pipeline.run(_request({**CHAT, "stream": True}))
        assert isinstance(stream, ChatStream)
        with pytest.raises(Overloaded):
            await pipeline.run(_request(dict(CHAT)))
        await _read(stream)
        await stream.aclose()
        request = _request(dict(CHAT))
        await pipeline.run(request)
        assert request.record.ratelimit_headers["x-ratelimit-remaining-requests"] == "0"


class HeldUpstream:
    """An OpenAI-compatible streaming upstream that sends nothing until told."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.app = web.Application()
        self.app.router.add_post("/v1/chat/completions", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        await asyncio.to_thread(self.release.wait, 30)
        return await stream_one_chunk(request)


async def test_a_slow_first_chunk_opens_the_stream_with_heartbeat_ticks(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    upstream = HeldUpstream()
    url = fake_upstream(upstream.app).url
    raw = {
        "models": [
            {
                "name": "held",
                "routing": {"heartbeat_after_s": 0.05, "heartbeat_interval_s": 0.05},
                "deployments": [
                    {"id": "held-1", "provider": "openai", "model": "m", "base_url": url + "/v1"}
                ],
            }
        ],
        "keys": [{"name": "test", "key": TEST_KEY}],
        "server": {"access_log": False},
    }
    gateway = build_gateway(parse_config(raw, env={}))
    async with gateway.lifespan():
        body = {**CHAT, "model": "held", "stream": True}
        stream = await gateway.services.pipeline.run(_request(body))
        assert isinstance(stream, ChatStream)
        assert stream.first is None  # opened without it: the response may start
        ticks = stream.opening()
        await anext(ticks)  # a heartbeat is due while the upstream holds back
        upstream.release.set()
        rest = [tick async for tick in ticks]
        assert all(tick is None for tick in rest)
        assert orjson.loads(stream.first or b"{}")["choices"][0]["delta"]["content"] == "hi"
        assert [chunk async for chunk in stream.chunks] == []
        await stream.aclose()
        assert _slots_taken(gateway) == 0
