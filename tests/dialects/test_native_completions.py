"""``/v1/completions`` on an upstream that serves the API itself: the
prompt as written (a base model with no chat template), several prompts, a
suffix, echo with logprobs and best_of, through the whole pipeline (routing
to deployments that can, guardrails on the prompt and suffix), with the
official ``openai`` SDK against a vLLM/Ollama-like fake on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from interlock.admission.gate import estimate_tokens
from interlock.cache.keys import body_digest
from interlock.chat_markers import LEGACY_COMPLETION, prompt_token_ids
from interlock.config import DeploymentConfig
from interlock.dialects.completions import Echo, check, echoed_prompt, from_chat, to_chat
from interlock.errors import InvalidRequest
from interlock.pipeline.failover import _continuation_body
from interlock.providers.openai_completions import chat_chunk, chat_completion, completions_body
from tests.conftest import TEST_KEY
from tests.support.fake_completions import BASE_MODEL, CUT, ME, completions_app, detokenized
from tests.support.servers import FakeUpstream, GatewayProcess

REDACTING_KEY = "sk-native-completions-redacting"
FORCING_KEY = "sk-native-completions-forcing"
EMAIL = "jane.doe@example.com"

# -- the translation, both ways ------------------------------------------------


def test_what_only_this_api_has_is_named_in_the_marker() -> None:
    def needed(**asked: Any) -> Any:
        return to_chat({"model": "m", "prompt": "hi", **asked})[LEGACY_COMPLETION]["needs"]

    assert needed() is None
    assert needed(prompt=["one", "two"]) == "prompt"
    assert needed(prompt=["one"]) is None
    assert needed(suffix="after") == "suffix"
    assert needed(suffix="") is None
    assert needed(echo=True) is None  # the edge writes the prompt itself
    assert needed(echo=True, logprobs=0) == "echo"
    assert needed(best_of=1, n=3) is None
    assert needed(best_of=3, n=3) is None
    assert needed(best_of=3) == "best_of"
    chat = to_chat({"model": "m", "prompt": ["a", "b"], "suffix": "z", "logprobs": 2})
    assert chat["messages"] == [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    assert chat["suffix"] == "z"  # a text field of the body: guardrails read it


def test_the_upstream_gets_the_prompts_and_this_api_s_own_parameters() -> None:
    chat = to_chat(
        {
            "model": "public",
            "prompt": ["one", "two"],
            "suffix": "tail",
            "echo": True,
            "logprobs": 2,
            "best_of": 3,
            "temperature": 0.2,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
    )
    assert completions_body(chat, "served-name") == {
        "model": "served-name",
        "prompt": ["one", "two"],
        "suffix": "tail",
        "echo": True,
        "logprobs": 2,
        "best_of": 3,
        "temperature": 0.2,
        "max_tokens": 16,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    one = completions_body(to_chat({"model": "m", "prompt": ["one"], "echo": True}), "x")
    assert one["prompt"] == "one"
    assert "echo" not in one and "logprobs" not in one  # echo without logprobs is the edge's


def test_a_failover_continues_the_prompt_with_the_partial_answer() -> None:
    chat = to_chat({"model": "m", "prompt": "Once upon", "echo": True, "logprobs": 1})
    again = _continuation_body(chat, " a time")
    body = completions_body(again, "x")
    assert body["prompt"] == "Once upon a time"  # no chat turns, no instruction to go on
    assert "echo" not in body  # the client has the prompt and the partial answer already


def test_token_ids_ride_in_the_marker_and_go_upstream_as_sent() -> None:
    one = to_chat({"model": "m", "prompt": [5, 6, 7], "echo": True})
    assert one["messages"] == [{"role": "user", "content": ""}]  # nothing to read as text
    assert one[LEGACY_COMPLETION]["tokens"] == [[5, 6, 7]]
    assert one[LEGACY_COMPLETION]["needs"] == "prompt"  # only the model's tokenizer reads them
    assert prompt_token_ids(one) == [[5, 6, 7]]
    assert echoed_prompt({"prompt": [5, 6, 7], "echo": True}) is None  # the upstream writes it
    sent = completions_body(one, "served")
    assert (sent["prompt"], sent["echo"]) == ([5, 6, 7], True)
    assert "messages" not in sent and LEGACY_COMPLETION not in sent
    batch = to_chat({"model": "m", "prompt": [[1, 2], [3]], "logprobs": 1})
    assert completions_body(batch, "served")["prompt"] == [[1, 2], [3]]
    assert "echo" not in completions_body(batch, "served")
    assert prompt_token_ids(to_chat({"model": "m", "prompt": ["text"]})) is None
    # Cached apart: the key is the body's, the marker's ids in it.
    other = to_chat({"model": "m", "prompt": [[1, 2], [4]], "logprobs": 1})
    assert body_digest(batch, dialect="completions") != body_digest(other, dialect="completions")
    # Admission counts the ids themselves, where text is estimated from its length.
    assert estimate_tokens(batch) == estimate_tokens(to_chat({"model": "m", "prompt": ""})) + 3


def test_max_tokens_0_with_echo_asks_the_upstream_for_the_prompt_alone() -> None:
    body = {"model": "m", "prompt": "Once upon", "max_tokens": 0, "echo": True, "logprobs": 1}
    check(body)
    chat = to_chat(body)
    assert chat["max_tokens"] == 1  # chat's least: a chat body cannot ask for none
    assert chat[LEGACY_COMPLETION]["needs"] == "max_tokens"
    assert echoed_prompt(body) is None  # the prompt is the upstream's answer
    sent = completions_body(chat, "served")
    assert (sent["max_tokens"], sent["echo"], sent["logprobs"]) == (0, True, 1)
    unscored = completions_body(to_chat({**body, "logprobs": None}), "served")
    assert (unscored["max_tokens"], unscored["echo"]) == (0, True)
    with pytest.raises(InvalidRequest) as raised:
        check({"model": "m", "prompt": "Once upon", "max_tokens": 0})
    assert raised.value.param == "max_tokens"


def test_a_text_completion_reads_back_as_itself() -> None:
    legacy = {
        "id": "cmpl-abc",
        "object": "text_completion",
        "created": 7,
        "model": "base",
        "choices": [
            {
                "index": 0,
                "text": "Hi there",
                "logprobs": {
                    "tokens": ["Hi", " there"],
                    "token_logprobs": [None, -0.5],
                    "top_logprobs": [None, {" there": -0.5, " here": -1.5}],
                    "text_offset": [0, 2],
                },
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
    }
    chat = chat_completion(legacy)
    assert chat["id"] == "chatcmpl-abc" and chat["object"] == "chat.completion"
    assert chat["choices"][0]["message"] == {"role": "assistant", "content": "Hi there"}
    back = from_chat(chat)
    assert back["id"] == "cmpl-abc" and back["usage"] == legacy["usage"]
    [choice] = back["choices"]
    assert (choice["text"], choice["finish_reason"]) == ("Hi there", "length")
    assert choice["logprobs"]["tokens"] == ["Hi", " there"]
    assert choice["logprobs"]["token_logprobs"] == [None, -0.5]
    assert choice["logprobs"]["top_logprobs"][1] == {" there": -0.5, " here": -1.5}
    assert choice["logprobs"]["text_offset"] == [0, 2]
    chunk = chat_chunk(b'{"id":"cmpl-abc","choices":[{"index":2,"text":"x","finish_reason":null}]}')
    assert b'"delta":{"content":"x"}' in chunk and b'"index":2' in chunk


def test_echo_puts_each_prompt_before_its_own_choices() -> None:
    echo = echoed_prompt({"prompt": ["A", "B"], "echo": True, "n": 2})
    assert echo == Echo(("A", "B"), 2)
    assert [echo.before(i) for i in range(4)] == ["A", "A", "B", "B"]
    assert echoed_prompt({"prompt": "A", "echo": True, "logprobs": 0}) is None  # the upstream's


@pytest.mark.parametrize(
    ("deployment", "native"),
    [
        ({"provider": "openai", "base_url": "http://127.0.0.1:8000/v1"}, True),
        ({"provider": "openai", "base_url": "https://api.openai.com/v1"}, False),
        (
            {
                "provider": "openai",
                "base_url": "https://api.openai.com/v1",
                "completions": "native",
            },
            True,
        ),
        ({"provider": "openai", "base_url": "http://vllm:8000/v1", "completions": "chat"}, False),
        ({"provider": "azure", "base_url": "https://r.openai.azure.com"}, False),
        (
            {
                "provider": "azure",
                "base_url": "https://r.openai.azure.com",
                "completions": "native",
            },
            True,
        ),
        ({"provider": "simulator"}, False),
    ],
)
def test_which_deployments_serve_completions_themselves(
    deployment: dict[str, Any], native: bool
) -> None:
    config = DeploymentConfig.model_validate({"id": "d", "model": "m", **deployment})
    assert config.native_completions is native


def test_only_openai_s_wire_can_serve_completions_itself() -> None:
    with pytest.raises(ValueError, match="needs OpenAI's wire"):
        DeploymentConfig.model_validate(
            {"id": "d", "provider": "gemini", "model": "m", "completions": "native"}
        )


# -- through a live gateway, with the official SDK -------------------------------


@pytest.fixture(scope="module")
def upstream() -> list[dict[str, Any]]:
    return []  # what the fake was asked, in order


@pytest.fixture(scope="module")
def gateway(
    tmp_path_factory: pytest.TempPathFactory, upstream: list[dict[str, Any]]
) -> Iterator[GatewayProcess]:
    fake = FakeUpstream(completions_app(upstream))
    served = {"provider": "openai", "model": BASE_MODEL, "base_url": fake.url + "/v1"}
    config = {
        "models": [
            {"name": "base", "deployments": [{"id": "base-1", **served}]},
            {
                "name": "base-as-chat",
                "deployments": [{"id": "chat-1", **served, "completions": "chat"}],
            },
            {
                "name": "failing-over",
                "routing": {
                    "strategy": "priority",
                    "params": {"ties": "stable"},
                    "mid_stream_failover": True,
                },
                "deployments": [
                    {"id": "first", **served, "priority": 0},
                    {"id": "second", **served, "priority": 1},
                ],
            },
            {
                "name": "mixed",
                "routing": {"strategy": "priority", "params": {"ties": "stable"}},
                "deployments": [
                    {"id": "mixed-sim", "provider": "simulator", "priority": 0},
                    {"id": "mixed-native", **served, "priority": 1},
                ],
            },
        ],
        "keys": [
            {"name": "test", "key": "os.environ/TEST_KEY"},
            {
                "name": "redacting",
                "key": REDACTING_KEY,
                "guardrails": {"pii": {"action": "redact"}},
            },
            {"name": "forcing", "key": FORCING_KEY, "permissions": ["force_deployment"]},
        ],
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    gateway = GatewayProcess(config, tmp_path_factory.mktemp("gw"), env={"TEST_KEY": TEST_KEY})
    yield gateway
    gateway.close()
    fake.close()


def _client(gateway: GatewayProcess, key: str = TEST_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)


@pytest.fixture(scope="module")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with _client(gateway) as client:
        yield client


def test_a_base_model_continues_the_prompt_as_written(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    completion = client.completions.create(model="base", prompt="Apple pie is")
    assert completion.id == "cmpl-fake0123456789" and completion.model == BASE_MODEL
    [choice] = completion.choices
    assert (choice.text, choice.index, choice.finish_reason) == (" apple goes on.", 0, "stop")
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    [asked] = upstream
    assert asked["path"] == "/v1/completions"
    assert asked["body"]["prompt"] == "Apple pie is" and asked["body"]["model"] == BASE_MODEL
    assert asked["body"]["max_tokens"] == 16
    assert "messages" not in asked["body"] and LEGACY_COMPLETION not in asked["body"]


def test_through_chat_the_same_base_model_has_no_template(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="base-as-chat", prompt="Apple pie is")
    assert "chat template" in raised.value.message  # the upstream's own words
    assert [asked["path"] for asked in upstream] == ["/v1/chat/completions"]


def test_several_prompts_answer_n_choices_each_in_prompt_order(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    completion = client.completions.create(
        model="base", prompt=["Apple pie", "Banana split"], n=2, max_tokens=2
    )
    assert [(c.index, c.text, c.finish_reason) for c in completion.choices] == [
        (0, " apple goes", "length"),
        (1, " apple#1 goes", "length"),
        (2, " banana goes", "length"),
        (3, " banana#1 goes", "length"),
    ]
    assert upstream[-1]["body"]["prompt"] == ["Apple pie", "Banana split"]
    assert upstream[-1]["body"]["n"] == 2


def test_several_prompts_streamed(client: openai.OpenAI) -> None:
    texts: dict[int, str] = {}
    finishes: dict[int, str] = {}
    usage = None
    stream = client.completions.create(
        model="base",
        prompt=["Apple pie", "Banana split"],
        n=2,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        assert chunk.object == "text_completion" and chunk.id == "cmpl-fake0123456789"
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
            if choice.finish_reason:
                finishes[choice.index] = choice.finish_reason
        usage = chunk.usage or usage
    assert texts == {
        0: " apple goes on.",
        1: " apple#1 goes on.",
        2: " banana goes on.",
        3: " banana#1 goes on.",
    }
    assert set(finishes.values()) == {"stop"} and len(finishes) == 4
    assert usage is not None and usage.completion_tokens == 16


def test_a_suffix_fills_in_the_middle(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    completion = client.completions.create(
        model="base", prompt="def add(a, b):\n    total = a + b\n", suffix="return total"
    )
    assert completion.choices[0].text == " def then return"
    assert upstream[-1]["body"]["suffix"] == "return total"


def test_echo_with_logprobs_scores_the_prompt_upstream(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    plain = client.completions.create(
        model="base", prompt="Cherry tart", echo=True, logprobs=2, max_tokens=3
    )
    [choice] = plain.choices
    assert choice.text == "Cherry tart cherry goes on"
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.tokens[:2] == ["Cherry", " tart"]
    assert logprobs.token_logprobs[0] is None and logprobs.token_logprobs[1] == -1.0
    assert logprobs.token_logprobs[2:] == [-0.1, -0.2, -0.3]
    assert logprobs.top_logprobs is not None
    assert logprobs.top_logprobs[2] == {" cherry": -0.1, " alt1": -1.1, " alt2": -2.1}
    assert logprobs.text_offset == [0, 6, 11, 18, 23]
    assert upstream[-1]["body"]["echo"] is True and upstream[-1]["body"]["logprobs"] == 2
    assert "top_logprobs" not in upstream[-1]["body"]  # chat's switch, not this API's

    streamed = client.completions.create(
        model="base", prompt="Cherry tart", echo=True, logprobs=2, max_tokens=3, stream=True
    )
    text, tokens, offsets = "", [], []
    for chunk in streamed:
        for piece in chunk.choices:
            text += piece.text
            if piece.logprobs is not None:
                tokens += piece.logprobs.tokens or []
                offsets += piece.logprobs.text_offset or []
    assert (text, tokens, offsets) == (choice.text, logprobs.tokens, logprobs.text_offset)


def test_echo_alone_is_written_by_the_gateway(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    completion = client.completions.create(
        model="base", prompt=["Apple", "Banana"], echo=True, max_tokens=1
    )
    assert [c.text for c in completion.choices] == ["Apple apple", "Banana banana"]
    assert "echo" not in upstream[-1]["body"]


def test_best_of_goes_upstream(client: openai.OpenAI, upstream: list[dict[str, Any]]) -> None:
    upstream.clear()
    completion = client.completions.create(model="base", prompt="Apple", best_of=3)
    assert len(completion.choices) == 1
    assert upstream[-1]["body"]["best_of"] == 3


def test_only_what_needs_the_api_is_routed_to_it(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    for _ in range(3):  # the simulator comes first, and answers as chat
        plain = client.completions.with_raw_response.create(model="mixed", prompt="Apple")
        assert plain.headers["x-interlock-deployment"] == "mixed-sim"
    assert upstream == []
    for _ in range(3):  # a suffix: only the deployment serving the API can honour it
        filled = client.completions.with_raw_response.create(
            model="mixed", prompt="Apple", suffix="pie"
        )
        assert filled.headers["x-interlock-deployment"] == "mixed-native"
    assert len(upstream) == 3


def test_a_deployment_forced_that_cannot_is_a_400(
    gateway: GatewayProcess, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    with _client(gateway, FORCING_KEY) as forcing:
        with pytest.raises(openai.BadRequestError) as raised:
            forcing.completions.create(
                model="mixed",
                prompt="Apple",
                suffix="pie",
                extra_headers={"x-interlock-force-deployment": "mixed-sim"},
            )
    assert raised.value.body["param"] == "suffix"  # type: ignore[index]
    assert "deployment `mixed-sim` is not one" in raised.value.message
    assert upstream == []


def test_guardrails_redact_the_prompts_and_the_suffix(
    gateway: GatewayProcess, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    with _client(gateway, REDACTING_KEY) as redacting:
        redacting.completions.create(
            model="base", prompt=["Mail me", f"at {EMAIL}"], suffix=f"or {EMAIL}"
        )
    [asked] = upstream
    assert EMAIL not in str(asked["body"])
    assert "[EMAIL]" in asked["body"]["prompt"][1] and "[EMAIL]" in asked["body"]["suffix"]


def test_a_stream_cut_mid_answer_is_continued_from_the_prompt_and_its_text(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    stream = client.completions.create(model="failing-over", prompt="Please cut me", stream=True)
    chunks = list(stream)
    assert len({chunk.id for chunk in chunks}) == 1  # one stream, as far as the client sees
    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert text == " please goes" + " please goes on."
    assert [asked["body"]["prompt"] for asked in upstream] == [
        "Please cut me",
        "Please cut me please goes",
    ]
    assert all(asked["path"] == "/v1/completions" for asked in upstream)


# -- prompts of token ids (lm-eval's default) ---------------------------------------


def test_lm_eval_s_loglikelihood_request_scores_each_prompt_of_ids(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    prompts = [[11, 12, 13], [21, 22]]
    # What lm-eval's local-completions model sends to score a continuation.
    scored = client.completions.create(
        model="base", prompt=prompts, echo=True, logprobs=1, max_tokens=1, temperature=0, seed=1
    )
    assert [choice.index for choice in scored.choices] == [0, 1]
    for ids, choice in zip(prompts, scored.choices, strict=True):
        assert choice.text == detokenized(ids) + f" t{ids[0]}"  # the prompt, then one token
        logprobs = choice.logprobs
        assert logprobs is not None and logprobs.tokens is not None
        assert len(logprobs.tokens) == len(ids) + 1
        assert logprobs.token_logprobs is not None and logprobs.token_logprobs[0] is None
    assert scored.usage is not None and scored.usage.prompt_tokens == 5
    [asked] = upstream
    assert asked["body"]["prompt"] == prompts and asked["body"]["echo"] is True
    assert "messages" not in asked["body"]


def test_prompts_of_ids_generate_unary_and_streamed(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    made = client.completions.create(model="base", prompt=[42, 7], max_tokens=3)
    assert made.choices[0].text == " t42 goes on"
    streamed = client.completions.create(model="base", prompt=[[42, 7]], max_tokens=3, stream=True)
    assert "".join(c.text for chunk in streamed for c in chunk.choices) == " t42 goes on"
    assert [asked["body"]["prompt"] for asked in upstream] == [[42, 7], [42, 7]]
    echoed = client.completions.create(model="base", prompt=[42], echo=True, max_tokens=1)
    assert echoed.choices[0].text == " t42 t42"  # echoed by the upstream, which can read ids
    assert upstream[-1]["body"]["echo"] is True


def test_ids_go_only_to_deployments_that_read_them(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    for _ in range(3):  # the simulator comes first, and could only read text
        routed = client.completions.with_raw_response.create(model="mixed", prompt=[1, 2])
        assert routed.headers["x-interlock-deployment"] == "mixed-native"
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="base-as-chat", prompt=[1, 2])
    assert raised.value.body["param"] == "prompt"  # type: ignore[index]
    assert len(upstream) == 3


@pytest.mark.parametrize("prompt", [[1, "two"], [[1], [2, -3]], [[]], [True, 1], [[1.5]]], ids=str)
def test_a_prompt_that_is_not_one_kind_of_list_is_a_400(
    client: openai.OpenAI, prompt: list[Any]
) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model="base", prompt=prompt)
    assert raised.value.body["param"] == "prompt"  # type: ignore[index]
    assert "one kind, not a mix" in raised.value.message


def test_guardrails_that_read_prompts_refuse_ids(
    gateway: GatewayProcess, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    with _client(gateway, REDACTING_KEY) as redacting:
        with pytest.raises(openai.BadRequestError) as raised:
            redacting.completions.create(model="base", prompt=[1, 2, 3])
    assert raised.value.body["param"] == "prompt"  # type: ignore[index]
    assert raised.value.code == "unsupported_parameter"
    assert "send the prompt as text" in raised.value.message
    assert upstream == []


def test_a_stream_of_ids_cut_mid_answer_is_not_continued(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    # No continuation can follow ids with the text so far: the cut reaches the client.
    stream = client.completions.create(model="failing-over", prompt=[5, CUT, ME], stream=True)
    with pytest.raises(openai.APIError):
        for _ in stream:
            pass
    assert len(upstream) == 1


def test_max_tokens_0_scores_the_prompt_alone(
    client: openai.OpenAI, upstream: list[dict[str, Any]]
) -> None:
    upstream.clear()
    # What older evaluation harnesses send to score a text (vLLM honours it, as OpenAI did).
    scored = client.completions.create(
        model="base", prompt="Cherry tart", echo=True, logprobs=1, max_tokens=0
    )
    [choice] = scored.choices
    assert choice.text == "Cherry tart"
    assert choice.logprobs is not None and choice.logprobs.tokens == ["Cherry", " tart"]
    assert choice.logprobs.token_logprobs == [None, -1.0]
    ids = client.completions.create(model="base", prompt=[[3, 4]], echo=True, max_tokens=0)
    assert ids.choices[0].text == detokenized([3, 4])
    assert [(a["body"]["max_tokens"], a["body"]["echo"]) for a in upstream] == [(0, True)] * 2
    with pytest.raises(openai.BadRequestError) as raised:  # chat cannot ask for no tokens
        client.completions.create(model="base-as-chat", prompt="Hi", echo=True, max_tokens=0)
    assert raised.value.body["param"] == "max_tokens"  # type: ignore[index]
