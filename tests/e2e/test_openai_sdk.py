"""The official ``openai`` SDK, unchanged, against a live gateway process."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Iterator

import openai
import pytest

from tests.conftest import TEST_KEY, simulator_config
from tests.support.servers import GatewayProcess

MESSAGES = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = simulator_config(max_tokens=12)
    config["models"].append(
        {
            "name": "broken",
            "deployments": [
                {"id": "broken-1", "provider": "simulator", "params": {"error_rate": 1.0}}
            ],
        }
    )
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY})
    yield gateway
    gateway.close()


@pytest.fixture
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        yield client


@pytest.fixture
async def async_client(gateway: GatewayProcess) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        yield client


def test_chat_completion(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(model="sim", messages=MESSAGES, max_tokens=5)
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in {"stop", "length"}
    assert completion.usage is not None
    assert completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )


def test_chat_is_deterministic_for_a_prompt(client: openai.OpenAI) -> None:
    first = client.chat.completions.create(model="sim", messages=MESSAGES)
    second = client.chat.completions.create(model="sim", messages=MESSAGES)
    assert first.choices[0].message.content == second.choices[0].message.content


def test_streaming_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="sim", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish and finish[-1] in {"stop", "length"}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0
    # Streaming and non-streaming give the same text for the same prompt.
    unary = client.chat.completions.create(model="sim", messages=MESSAGES)
    assert text == unary.choices[0].message.content


def test_streaming_without_usage_has_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="sim", messages=MESSAGES, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


async def test_async_client_chat_and_stream(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(model="sim", messages=MESSAGES)
    assert completion.choices[0].message.content
    stream = await async_client.chat.completions.create(
        model="sim", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    models = await async_client.models.list()
    assert {m.id for m in models.data} >= {"sim", "embed"}


def test_embeddings_string_and_list(client: openai.OpenAI) -> None:
    single = client.embeddings.create(model="embed", input="hello", encoding_format="float")
    assert len(single.data) == 1 and len(single.data[0].embedding) == 8
    many = client.embeddings.create(model="embed", input=["a", "b", "c"], encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2]
    assert many.usage.prompt_tokens > 0
    norm = sum(v * v for v in many.data[0].embedding)
    assert norm == pytest.approx(1.0, rel=1e-6)


def test_embeddings_base64_matches_float(client: openai.OpenAI) -> None:
    floats = client.embeddings.create(model="embed", input="x", encoding_format="float")
    raw = client.embeddings.with_raw_response.create(
        model="embed", input="x", encoding_format="base64"
    )
    encoded = raw.http_response.json()["data"][0]["embedding"]
    decoded = struct.unpack("<8f", base64.b64decode(encoded))
    assert decoded == pytest.approx(floats.data[0].embedding, rel=1e-6)
    # The SDK's default (no encoding_format) asks for base64 and decodes it.
    default = client.embeddings.create(model="embed", input="x")
    assert default.data[0].embedding == pytest.approx(floats.data[0].embedding, rel=1e-6)


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    by_id = {m.id: m for m in models.data}
    assert by_id["sim"].owned_by == "interlock-simulator"
    assert client.models.retrieve("sim").id == "sim"


def test_unknown_model_retrieve_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.models.retrieve("no-such-model")
    assert info.value.code == "model_not_found"


def test_bad_key_is_authentication_error(gateway: GatewayProcess) -> None:
    bad = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="sk-wrong", max_retries=0)
    with bad, pytest.raises(openai.AuthenticationError) as info:
        bad.chat.completions.create(model="sim", messages=MESSAGES)
    body = info.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "authentication_error"


def test_unknown_model_is_not_found(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-nope", messages=MESSAGES)
    assert info.value.status_code == 404
    assert info.value.param == "model"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
        ({"messages": MESSAGES, "temperature": 7}, "temperature"),
        ({"messages": MESSAGES, "max_tokens": "ten"}, "max_tokens"),
        ({"messages": MESSAGES, "logprobs": True, "top_logprobs": 21}, "top_logprobs"),
    ],
)
def test_schema_violations_are_bad_request(
    client: openai.OpenAI, kwargs: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="sim", **kwargs)  # type: ignore[call-overload]
    assert info.value.param == param
    assert info.value.type == "invalid_request_error"


def test_upstream_failure_is_server_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="broken", messages=MESSAGES)
    # The group's only deployment failed: 503 naming the model, with the cause.
    assert info.value.status_code == 503
    assert info.value.code == "all_deployments_failed"
    assert "simulated server_error" in info.value.message
    assert info.value.response.headers["retry-after"]


def test_upstream_failure_before_first_byte_keeps_status_when_streaming(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.InternalServerError):
        list(client.chat.completions.create(model="broken", messages=MESSAGES, stream=True))


def test_logprobs_reach_the_sdk_unary_and_streamed(client: openai.OpenAI) -> None:
    asked = {"model": "sim", "messages": MESSAGES, "logprobs": True, "top_logprobs": 2}
    completion = client.chat.completions.create(**asked)  # type: ignore[call-overload]
    choice = completion.choices[0]
    assert choice.logprobs is not None and choice.logprobs.content
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    assert all(len(t.top_logprobs) == 2 for t in choice.logprobs.content)
    streamed = [
        token.token
        for chunk in client.chat.completions.create(**asked, stream=True)  # type: ignore[call-overload]
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content
        for token in chunk.choices[0].logprobs.content
    ]
    assert streamed == [t.token for t in choice.logprobs.content]


def test_unknown_fields_are_tolerated(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="sim", messages=MESSAGES, extra_body={"some_future_field": {"x": 1}}
    )
    assert completion.choices
