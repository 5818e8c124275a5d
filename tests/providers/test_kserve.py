"""The KServe v2 adapter against the fake v2 server over real loopback HTTP."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from interlock.config import ConfigError, DeploymentConfig, Secret, TimeoutConfig
from interlock.errors import (
    UnsupportedOperation,
    UpstreamConnectionError,
    UpstreamProtocolError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from interlock.providers.base import CallContext
from interlock.providers.kserve import KServeProvider
from interlock.routing.router import error_kind
from tests.support.fake_kserve import FakeKServe, tiny_classifier
from tests.support.servers import FakeUpstream

CTX = CallContext(
    request_id="req_abc", public_model="classifier", trace_headers={"traceparent": "00-ab-cd-01"}
)
ROWS = [[1.0, 2.0, 3.0, 4.0], [-0.5, 0.25, 0.0, 2.0]]
W = [[0.5, -0.25, 0.125], [-1.0, 0.75, 0.25], [0.25, 0.5, -0.75], [1.5, -0.5, 0.0]]
B = [0.1, -0.2, 0.05]

Make = Callable[..., Awaitable[KServeProvider]]


def expected(row: list[float]) -> list[float]:
    """softmax(row @ W + b), worked out apart from the fake's own code."""
    logits = [sum(row[i] * W[i][j] for i in range(4)) + B[j] for j in range(3)]
    exps = [math.exp(v) for v in logits]
    return [e / sum(exps) for e in exps]


def request(**overrides: Any) -> dict[str, Any]:
    tensor = {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": ROWS}
    return {"model": "classifier", "inputs": [tensor], **overrides}


@pytest.fixture
async def fake() -> AsyncIterator[FakeKServe]:
    versioned = dataclasses.replace(tiny_classifier(), versions=("1", "2"))
    async with FakeKServe([versioned]) as server:
        yield server


@pytest.fixture
async def make(fake: FakeKServe) -> AsyncIterator[Make]:
    started: list[KServeProvider] = []

    async def start(**fields: Any) -> KServeProvider:
        config = {
            "id": "kserve-1",
            "provider": "kserve",
            "model": "tiny-classifier",
            "base_url": fake.url,
            "timeouts": TimeoutConfig(read_s=5, total_s=10),
            **fields,
        }
        provider = KServeProvider(DeploymentConfig(**config))
        await provider.start()
        started.append(provider)
        return provider

    yield start
    for provider in started:
        await provider.aclose()


async def test_infer_answers_under_the_public_name(make: Make, fake: FakeKServe) -> None:
    provider = await make()
    body = request(version="7", id="r-1", outputs=[{"name": "probabilities"}], parameters=None)
    result = await provider.infer(body, CTX)
    assert result["model_name"] == "classifier" and result["id"] == "r-1"
    [output] = result["outputs"]
    assert output["name"] == "probabilities" and output["shape"] == [2, 3]
    want = expected(ROWS[0]) + expected(ROWS[1])
    assert all(abs(got - w) < 1e-6 for got, w in zip(output["data"], want, strict=True))
    # Only the v2 request goes up: the gateway's model and version stay here.
    assert fake.last_body == {
        "id": "r-1",
        "inputs": body["inputs"],
        "outputs": [{"name": "probabilities"}],
    }
    assert "tiny-classifier" not in str(result)


async def test_unversioned_and_versioned_paths(make: Make, fake: FakeKServe) -> None:
    unversioned = await make()
    assert (await unversioned.infer(request(), CTX))["model_version"] == "2"  # the server's pick
    assert fake.last_path == "/v2/models/tiny-classifier/infer"

    pinned = await make(params={"model_version": 1}, base_url=fake.url + "/v2")
    assert (await pinned.infer(request(), CTX))["model_version"] == "1"
    assert fake.last_path == "/v2/models/tiny-classifier/versions/1/infer"
    assert await pinned.model_ready(CTX)

    missing = await make(params={"model_version": "9"})
    assert not await missing.model_ready(CTX)
    with pytest.raises(UpstreamProtocolError):
        await missing.model_metadata(CTX)


async def test_metadata_under_the_public_name(make: Make) -> None:
    metadata = await (await make()).model_metadata(CTX)
    assert metadata == {
        "name": "classifier",
        "versions": ["1", "2"],
        "platform": "fake_python",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
    }


async def test_ready_follows_the_upstream_and_never_raises(make: Make, fake: FakeKServe) -> None:
    provider = await make()
    assert await provider.model_ready(CTX)
    fake.unready.add("tiny-classifier")
    assert not await provider.model_ready(CTX)
    assert not await (await make(model="no-such-model")).model_ready(CTX)
    assert not await (await make(base_url="http://127.0.0.1:9")).model_ready(CTX)


@pytest.mark.parametrize(
    ("tensor", "says"),
    [
        ({"datatype": "FP64"}, "data-type is 'FP64', but model 'tiny-classifier' expects 'FP32'"),
        ({"shape": [4, 2]}, "unexpected shape for input 'features'"),
        ({"name": "pixels"}, "unexpected inference input 'pixels'"),
    ],
)
async def test_upstream_400_is_the_clients_error(
    make: Make, tensor: dict[str, Any], says: str
) -> None:
    provider = await make()
    bad = {"name": "features", "shape": [2, 4], "datatype": "FP32", "data": ROWS, **tensor}
    with pytest.raises(UpstreamStatusError) as info:
        await provider.infer(request(inputs=[bad]), CTX)
    assert info.value.status_code == 400 and info.value.error_type == "invalid_request_error"
    assert says in info.value.message
    assert error_kind(info.value) == "client_error"  # the deployment is not blamed


@pytest.mark.parametrize(
    ("status", "kind"), [(500, "server_error"), (503, "server_error"), (429, "rate_limited")]
)
async def test_upstream_faults(make: Make, fake: FakeKServe, status: int, kind: str) -> None:
    provider = await make()
    fake.fail_next(status)
    with pytest.raises(UpstreamStatusError) as info:
        await provider.infer(request(), CTX)
    assert info.value.upstream_status == status and error_kind(info.value) == kind
    assert info.value.deployment == "kserve-1"
    assert f"injected fault {status}" in info.value.message
    assert (await provider.infer(request(), CTX))["outputs"]  # only the next call failed
    assert fake.infer_calls == 2


async def test_unknown_upstream_model_is_the_deployments_fault(make: Make) -> None:
    provider = await make(model="no-such-model")
    with pytest.raises(UpstreamProtocolError) as info:
        await provider.infer(request(), CTX)
    assert info.value.status_code == 502 and error_kind(info.value) == "protocol"
    assert "unknown model" in info.value.message


async def test_connection_refused(make: Make) -> None:
    provider = await make(base_url="http://127.0.0.1:9")
    with pytest.raises(UpstreamConnectionError):
        await provider.infer(request(), CTX)


async def test_slow_upstream_times_out(make: Make, fake: FakeKServe) -> None:
    fake.latency_s = 60.0  # held until the fake closes
    provider = await make(timeouts=TimeoutConfig(read_s=0.2, total_s=0.4))
    with pytest.raises(UpstreamTimeout):
        await provider.infer(request(), CTX)
    await fake.wait_for_infer_calls(1)


async def test_credentials_and_request_headers_go_up(make: Make, fake: FakeKServe) -> None:
    provider = await make(api_key=Secret("kserve-key"))
    await provider.infer(request(), CTX)
    headers = fake.last_headers
    assert headers["Authorization"] == "Bearer kserve-key"
    assert headers["x-request-id"] == "req_abc" and headers["traceparent"] == "00-ab-cd-01"


async def test_answer_without_outputs_is_a_protocol_error(
    fake_upstream: Callable[[web.Application], FakeUpstream],
) -> None:
    async def no_outputs(request: web.Request) -> web.Response:
        return web.json_response({"model_name": "m"})

    async def a_list(request: web.Request) -> web.Response:
        return web.json_response(["not", "an", "object"])

    app = web.Application()
    app.router.add_post("/v2/models/m/infer", no_outputs)
    app.router.add_get("/v2/models/m", a_list)
    config = DeploymentConfig(id="k", provider="kserve", model="m", base_url=fake_upstream(app).url)
    provider = KServeProvider(config)
    await provider.start()
    try:
        with pytest.raises(UpstreamProtocolError, match="no `outputs`"):
            await provider.infer(request(), CTX)
        with pytest.raises(UpstreamProtocolError, match="not a JSON object"):
            await provider.model_metadata(CTX)
    finally:
        await provider.aclose()


async def test_chat_is_refused(make: Make) -> None:
    provider = await make()
    body = {"model": "classifier", "messages": [{"role": "user", "content": "hi"}]}
    with pytest.raises(UnsupportedOperation):
        await provider.chat(body, CTX)
    with pytest.raises(UnsupportedOperation):
        [chunk async for chunk in provider.stream_chat(body, CTX)]


@pytest.mark.parametrize(
    "fields",
    [{"params": {"model_versoin": "1"}}, {"params": {"model_version": ""}}, {"base_url": None}],
)
def test_bad_config_is_refused_at_start(fields: dict[str, Any]) -> None:
    config = {"id": "k", "provider": "kserve", "model": "m", "base_url": "http://h:8000"}
    with pytest.raises(ConfigError, match="deployment k"):
        KServeProvider(DeploymentConfig(**{**config, **fields}))
