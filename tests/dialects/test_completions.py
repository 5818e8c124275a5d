"""Legacy Completions (``POST /v1/completions``): the translation to and from
chat on plain data, then the official ``openai`` SDK's
``client.completions.create``, plain and streamed, through one gateway in
front of the simulator and an OpenAI-compatible upstream (the Azure fake)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest

from interlock.chat_markers import LEGACY_COMPLETION
from interlock.dialects.completions import check, chunk_from_chat, from_chat, to_chat
from interlock.errors import InvalidRequest
from tests.conftest import TEST_KEY
from tests.support.fake_azure import azure_app
from tests.support.servers import FakeUpstream, GatewayProcess

# -- the translation -----------------------------------------------------------


def test_the_prompt_becomes_one_user_message_and_max_tokens_defaults_to_16() -> None:
    chat = to_chat({"model": "m", "prompt": "Once upon", "temperature": 0.5, "top_k": 3})
    assert chat == {
        "model": "m",
        "messages": [{"role": "user", "content": "Once upon"}],
        "temperature": 0.5,
        "top_k": 3,  # unknown fields go on, as on the chat edge
        "max_tokens": 16,
        # What only this API has, for upstreams that serve it (a chat model needs none).
        LEGACY_COMPLETION: {"echo": False, "logprobs": None, "best_of": None, "needs": None},
    }


def test_a_list_of_one_prompt_and_the_legacy_only_parameters() -> None:
    body = {
        "model": "m",
        "prompt": ["Once upon"],
        "max_tokens": None,
        "suffix": "",
        "echo": False,
        "logprobs": None,
        "best_of": 1,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    check(body)
    assert to_chat(body) == {
        "model": "m",
        "messages": [{"role": "user", "content": "Once upon"}],
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        # The no-op values: any chat model answers it.
        LEGACY_COMPLETION: {"echo": False, "logprobs": None, "best_of": 1, "needs": None},
    }  # max_tokens null: the model's own limit


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"prompt": []}, "prompt", "invalid_value"),
        ({"prompt": [1, -2, 3]}, "prompt", "invalid_value"),
        ({"prompt": [[1], []]}, "prompt", "invalid_value"),
        ({"prompt": ["a"] * 2049}, "prompt", "invalid_value"),
        ({"prompt": 7}, "prompt", "invalid_value"),
        ({"prompt": None}, "prompt", "invalid_value"),
        ({"max_tokens": -1}, "max_tokens", "invalid_value"),
        ({"max_tokens": 0}, "max_tokens", "invalid_value"),  # without echo: nothing to say
        ({"temperature": "hot"}, "temperature", "invalid_value"),
        ({"suffix": 3}, "suffix", "invalid_value"),
        ({"logprobs": 6}, "logprobs", "invalid_value"),
        ({"best_of": 21}, "best_of", "invalid_value"),
        ({"best_of": 2, "n": 3}, "best_of", "invalid_value"),
        ({"best_of": 2, "stream": True}, "best_of", "invalid_value"),
        ({"echo": "yes"}, "echo", "invalid_value"),
    ],
)
def test_what_cannot_be_translated_is_a_400_naming_the_parameter(
    change: dict[str, Any], param: str, code: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        check({"model": "m", "prompt": "hi", **change})
    assert (raised.value.param, raised.value.code) == (param, code)


def test_a_missing_prompt_is_named() -> None:
    with pytest.raises(InvalidRequest) as raised:
        check({"model": "m"})
    assert (raised.value.param, raised.value.code) == ("prompt", "missing_required_parameter")


def test_prompts_of_token_ids_are_valid_and_a_mix_says_why() -> None:
    check({"model": "m", "prompt": ["one", "two"]})  # several prompts: the routing's to judge
    check({"model": "m", "prompt": [[1, 2], [3]]})  # so are token ids
    check({"model": "m", "prompt": [0, 1, 2]})
    with pytest.raises(InvalidRequest, match="one kind, not a mix"):
        check({"model": "m", "prompt": [[1, 2], "three"]})


def test_logprobs_ask_the_chat_model_and_come_back_in_this_api_s_shape() -> None:
    assert to_chat({"model": "m", "prompt": "hi", "logprobs": 2})["top_logprobs"] == 2
    assert to_chat({"model": "m", "prompt": "hi", "logprobs": 0})["logprobs"] is True
    assert "top_logprobs" not in to_chat({"model": "m", "prompt": "hi", "logprobs": 0})
    assert "logprobs" not in to_chat({"model": "m", "prompt": "hi"})

    def entry(token: str, logprob: float, *others: tuple[str, float]) -> dict[str, Any]:
        top = [{"token": t, "logprob": v} for t, v in ((token, logprob), *others)]
        return {"token": token, "logprob": logprob, "bytes": [], "top_logprobs": top}

    def chunk(text: str, *entries: dict[str, Any]) -> bytes:
        choice = {"index": 0, "delta": {"content": text}, "logprobs": {"content": list(entries)}}
        return orjson.dumps({"id": "chatcmpl-x", "choices": [choice]})

    offsets: dict[int, int] = {}
    first = orjson.loads(chunk_from_chat(chunk("Hi", entry("Hi", -0.1, ("Yo", -2.0))), offsets))
    second = orjson.loads(
        chunk_from_chat(chunk(" there!", entry(" there", -0.2), entry("!", -0.3)), offsets)
    )
    assert first["choices"][0]["logprobs"] == {
        "tokens": ["Hi"],
        "token_logprobs": [-0.1],
        "top_logprobs": [{"Hi": -0.1, "Yo": -2.0}],
        "text_offset": [0],
    }
    assert second["choices"][0]["logprobs"] == {
        "tokens": [" there", "!"],
        "token_logprobs": [-0.2, -0.3],
        "top_logprobs": [{" there": -0.2}, {"!": -0.3}],
        "text_offset": [2, 8],  # counted from the stream's first chunk
    }


def test_a_chat_completion_becomes_a_text_completion() -> None:
    usage = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    answer = from_chat(
        {
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1700000000,
            "model": "m-2024",
            "system_fingerprint": "fp_1",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello there"},
                    "finish_reason": "stop",
                },
                {
                    "index": 1,
                    "message": {"role": "assistant", "content": None, "refusal": "No."},
                    "finish_reason": "content_filter",
                },
            ],
            "usage": usage,
        }
    )
    assert answer == {
        "id": "cmpl-abc",
        "object": "text_completion",
        "created": 1700000000,
        "model": "m-2024",
        "system_fingerprint": "fp_1",
        "choices": [
            {"text": "Hello there", "index": 0, "logprobs": None, "finish_reason": "stop"},
            {"text": "", "index": 1, "logprobs": None, "finish_reason": "content_filter"},
        ],
        "usage": usage,
    }


def test_each_chunk_becomes_a_text_completion_chunk() -> None:
    def chunk(**fields: Any) -> bytes:
        base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
        return orjson.dumps({**base, **fields})

    first = chunk(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    text = chunk(choices=[{"index": 0, "delta": {"content": "Hi"}, "finish_reason": None}])
    last = chunk(choices=[{"index": 0, "delta": {}, "finish_reason": "length"}])
    usage = {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}
    usage_only = chunk(choices=[], usage=usage)
    translated = [orjson.loads(chunk_from_chat(c)) for c in (first, text, last, usage_only)]
    assert {c["id"] for c in translated} == {"cmpl-x"}
    assert {c["object"] for c in translated} == {"text_completion"}
    assert [c["choices"] for c in translated] == [
        [{"text": "", "index": 0, "logprobs": None, "finish_reason": None}],
        [{"text": "Hi", "index": 0, "logprobs": None, "finish_reason": None}],
        [{"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}],
        [],
    ]
    assert translated[3]["usage"] == usage


# -- through a live gateway, with the official SDK -------------------------------

UPSTREAM: list[dict[str, Any]] = []  # what the Azure fake was asked, in order


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    fake = FakeUpstream(azure_app(UPSTREAM))
    config = {
        "models": [
            {
                "name": "azure",
                "deployments": [
                    {
                        "id": "azure-1",
                        "provider": "azure",
                        "model": "gpt-4o",
                        "api_key": "test",
                        "base_url": fake.url,
                    }
                ],
            },
            {"name": "sim", "deployments": [{"id": "sim-1", "provider": "simulator"}]},
            {
                "name": "cut",
                "deployments": [
                    {"id": "cut-1", "provider": "simulator", "params": {"cut_after_tokens": 3}}
                ],
            },
        ],
        "keys": [{"name": "test", "key": "os.environ/TEST_KEY"}],
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY})
    yield gateway
    gateway.close()
    fake.close()


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0
    ) as client:
        yield client


def test_a_completion_from_an_openai_compatible_upstream(client: openai.OpenAI) -> None:
    UPSTREAM.clear()
    completion = client.completions.create(model="azure", prompt="Say hello")
    assert completion.object == "text_completion"
    assert completion.id.startswith("cmpl-")
    assert completion.model == "gpt-4o-2024-08-06"
    [choice] = completion.choices
    assert (choice.text, choice.index, choice.finish_reason) == ("Hello from azure", 0, "stop")
    assert choice.logprobs is None
    assert completion.usage is not None and completion.usage.total_tokens > 0
    # One chat request upstream: the prompt as the user's message, OpenAI's default limit.
    [asked] = UPSTREAM
    assert asked["body"]["messages"] == [{"role": "user", "content": "Say hello"}]
    assert asked["body"]["max_tokens"] == 16
    assert "prompt" not in asked["body"]


def test_a_streamed_completion_from_an_openai_compatible_upstream(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="azure",
        prompt="Say hello, streamed",
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert {chunk.object for chunk in chunks} == {"text_completion"}
    # Azure's first chunk (its prompt's filter results) has no id and no choices.
    ids = {chunk.id for chunk in chunks if chunk.id}
    assert len(ids) == 1 and ids.pop().startswith("cmpl-")
    choices = [choice for chunk in chunks for choice in chunk.choices]
    assert "".join(choice.text for choice in choices) == "Hello from azure"
    assert [c.finish_reason for c in choices if c.finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens > 0


def test_the_simulator_plain_and_streamed_say_the_same(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="sim", prompt="Tell me a story", max_tokens=8)
    assert plain.choices[0].text
    assert plain.choices[0].finish_reason == "length"
    assert plain.usage is not None and plain.usage.completion_tokens == 8
    streamed = client.completions.create(
        model="sim", prompt="Tell me a story", max_tokens=8, stream=True
    )
    chunks = list(streamed)
    assert "".join(c.text for chunk in chunks for c in chunk.choices) == plain.choices[0].text
    assert chunks[-1].choices[0].finish_reason == "length"


def test_logprobs_reach_the_sdk_unary_and_streamed(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="sim", prompt="Tell me", max_tokens=6, logprobs=2)
    logprobs = plain.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.top_logprobs
    assert "".join(logprobs.tokens) == plain.choices[0].text
    assert all(len(top) == 2 for top in logprobs.top_logprobs)
    streamed = client.completions.create(
        model="sim", prompt="Tell me", max_tokens=6, logprobs=2, stream=True
    )
    tokens, offsets = [], []
    for chunk in streamed:
        if chunk.choices and chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.tokens or []
            offsets += chunk.choices[0].logprobs.text_offset or []
    assert tokens == logprobs.tokens and offsets == logprobs.text_offset


def test_echo_puts_the_prompt_before_the_text_unary_and_streamed(client: openai.OpenAI) -> None:
    plain = client.completions.create(model="sim", prompt="Tell me", max_tokens=6)
    echoed = client.completions.create(model="sim", prompt="Tell me", max_tokens=6, echo=True)
    assert echoed.choices[0].text == "Tell me" + plain.choices[0].text
    streamed = client.completions.create(
        model="sim", prompt=["Tell me"], max_tokens=6, echo=True, stream=True, n=2
    )
    texts: dict[int, str] = {}
    for chunk in streamed:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert sorted(texts) == [0, 1]
    assert all(text.startswith("Tell me") and text != "Tell me" for text in texts.values())
    assert texts[0] == echoed.choices[0].text


def test_n_gives_indexed_choices_within_the_default_limit(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="sim", prompt="Go on and on", n=2)
    assert [choice.index for choice in completion.choices] == [0, 1]
    assert completion.usage is not None and completion.usage.completion_tokens <= 2 * 16


@pytest.mark.parametrize(
    ("asked", "param"),
    [
        ({"prompt": ["one", "two"]}, "prompt"),
        ({"prompt": "hi", "suffix": "The end."}, "suffix"),
        ({"prompt": "hi", "echo": True, "logprobs": 1}, "echo"),
        ({"prompt": "hi", "best_of": 2}, "best_of"),
    ],
)
def test_what_a_chat_model_cannot_do_is_a_400_naming_it(
    client: openai.OpenAI, asked: dict[str, Any], param: str
) -> None:
    # Neither model has a deployment serving /v1/completions itself (Azure's
    # default is chat; the simulator is one), so nothing can honour these.
    for model in ("sim", "azure"):
        with pytest.raises(openai.BadRequestError) as raised:
            client.completions.create(model=model, **asked)
        assert raised.value.body["param"] == param  # type: ignore[index]
        assert raised.value.code == "unsupported_parameter"
        assert "serves /v1/completions itself" in raised.value.message


def test_a_bad_key_is_a_401_before_a_bad_body(gateway: GatewayProcess) -> None:
    with openai.OpenAI(
        base_url=gateway.base_url + "/v1", api_key="sk-wrong", max_retries=0
    ) as stranger:
        with pytest.raises(openai.AuthenticationError):
            stranger.completions.create(model="sim", prompt=["one", "two"])


def test_an_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="nope", prompt="hi")


def test_a_stream_cut_after_it_started_ends_with_an_error_event(gateway: GatewayProcess) -> None:
    body = {"model": "cut", "prompt": "Tell me a story", "stream": True}
    headers = {"authorization": f"Bearer {TEST_KEY}"}
    with httpx.Client(base_url=gateway.base_url, timeout=10) as http:
        with http.stream("POST", "/v1/completions", json=body, headers=headers) as response:
            assert response.status_code == 200
            events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    *chunks, error = [orjson.loads(event[len("data: ") :]) for event in events[:-1]]
    assert chunks and {chunk["object"] for chunk in chunks} == {"text_completion"}
    assert "".join(choice["text"] for chunk in chunks for choice in chunk["choices"])
    assert set(error) == {"error"}  # OpenAI's error event, as on the chat edge
