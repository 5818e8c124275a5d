"""Anthropic's Message Batches API with the official ``anthropic`` SDK,
unchanged, against the embedded default (SQLite records store, the SQL
queue, the gateway's own worker): create, poll, results matched by
custom_id, list pages both ways, cancel, delete; scoped to the key; errors
in Anthropic's shape. Each request runs through the pipeline as a
``/v1/messages`` request, answered here by the simulator (an OpenAI-shaped
engine), so every result crossed the dialect translation."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.sdk_clients import closed_after_test
from tests.support.servers import InProcessGateway
from tests.support.waiting import wait_for

OTHER_KEY = "sk-other-message-batches"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., InProcessGateway]]:
    started: list[InProcessGateway] = []

    def start(
        params: dict[str, Any] | None = None, cache: bool = False, **batch: Any
    ) -> InProcessGateway:
        raw: dict[str, Any] = {
            **simulator_config(**{"ttft_ms": 1, "tokens_per_s": 100_000, **(params or {})}),
            "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
            "files": {"dir": str(tmp_path / "blobs")},
            "batch": {"chunk_size": 2, "worker": {"sweep_s": 0.1}, **batch},
            "server": {"access_log": False},
            "cache": {"enabled": cache},
        }
        raw["keys"] = [*raw["keys"], {"name": "other", "key": OTHER_KEY}]
        gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.close()


@pytest.fixture
def gateway(start: Callable[..., InProcessGateway]) -> InProcessGateway:
    return start()


def _client(gateway: InProcessGateway, key: str = TEST_KEY) -> anthropic.Anthropic:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=key, max_retries=0)
    return closed_after_test(client)


def _params(text: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": "sim",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }


def _ended(client: anthropic.Anthropic, batch_id: str) -> Any:
    def check() -> Any:
        batch = client.messages.batches.retrieve(batch_id)
        return batch if batch.processing_status == "ended" else None

    return wait_for(check, what=f"message batch {batch_id} to end")


def test_the_sdk_message_batch_workflow_runs_unchanged(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    bad_params = {"model": "sim", "messages": [{"role": "user", "content": "no max_tokens"}]}
    created = client.messages.batches.create(
        requests=[
            {"custom_id": "first", "params": _params("hello one")},  # type: ignore[typeddict-item]
            {"custom_id": "second", "params": _params("hello two", system="Be brief.")},  # type: ignore[typeddict-item]
            {"custom_id": "bad-params", "params": bad_params},  # type: ignore[typeddict-item]
            {"custom_id": "no_model", "params": _params("x", model="no-such-model")},  # type: ignore[typeddict-item]
        ]
    )
    assert created.id.startswith("msgbatch_") and created.type == "message_batch"
    assert created.processing_status == "in_progress" and created.results_url is None
    assert created.request_counts.processing == 4

    done = _ended(client, created.id)
    counts = done.request_counts
    assert (counts.succeeded, counts.errored, counts.processing) == (2, 2, 0)
    assert (counts.canceled, counts.expired) == (0, 0)
    assert done.ended_at is not None and done.ended_at >= done.created_at
    assert done.expires_at > done.created_at
    assert done.results_url == f"{gateway.base_url}/v1/messages/batches/{done.id}/results"

    results = list(client.messages.batches.results(done.id))
    assert [r.custom_id for r in results] == ["first", "second", "bad-params", "no_model"]
    for result in results[:2]:
        assert result.result.type == "succeeded"
        message = result.result.message
        assert message.type == "message" and message.role == "assistant"
        assert message.content[0].type == "text" and message.content[0].text
        assert message.usage.input_tokens > 0 and message.stop_reason in ("end_turn", "max_tokens")
    missing, unknown = results[2].result, results[3].result
    assert missing.type == "errored" and unknown.type == "errored"
    assert missing.error.error.type == "invalid_request_error"
    assert "max_tokens" in missing.error.error.message
    assert unknown.error.error.type == "not_found_error"

    assert done.id in [b.id for b in client.messages.batches.list()]
    deleted = client.messages.batches.delete(done.id)
    assert (deleted.id, deleted.type) == (done.id, "message_batch_deleted")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve(done.id)


def test_a_batch_belongs_to_its_key(gateway: InProcessGateway) -> None:
    client, other = _client(gateway), _client(gateway, OTHER_KEY)
    created = client.messages.batches.create(
        requests=[{"custom_id": "a", "params": _params("hi")}]  # type: ignore[list-item]
    )
    _ended(client, created.id)
    with pytest.raises(anthropic.BadRequestError, match="only a validating or in-progress"):
        client.messages.batches.cancel(created.id)  # it ended without a cancel
    for call in (
        lambda: other.messages.batches.retrieve(created.id),
        lambda: other.messages.batches.cancel(created.id),
        lambda: other.messages.batches.delete(created.id),
    ):
        with pytest.raises(anthropic.NotFoundError) as caught:
            call()
        assert caught.value.body == {
            "type": "error",
            "error": {
                "type": "not_found_error",
                "message": f"No such message batch: {created.id}",
            },
        }
    foreign = httpx.get(
        f"{gateway.base_url}/v1/messages/batches/{created.id}/results",
        headers={"x-api-key": OTHER_KEY},
    )
    assert foreign.status_code == 404
    assert [b.id for b in other.messages.batches.list()] == []
    with pytest.raises(anthropic.AuthenticationError):
        _client(gateway, "sk-not-a-key").messages.batches.list()


def test_lists_page_both_ways_newest_first(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    ids = [
        client.messages.batches.create(
            requests=[{"custom_id": f"r{n}", "params": _params(f"q{n}")}]  # type: ignore[list-item]
        ).id
        for n in range(5)
    ]
    newest_first = list(reversed(ids))
    first = client.messages.batches.list(limit=2)
    assert [b.id for b in first.data] == newest_first[:2] and first.has_more
    assert (first.first_id, first.last_id) == (newest_first[0], newest_first[1])
    assert [b.id for b in client.messages.batches.list(limit=2)] == newest_first  # every page
    newer = client.messages.batches.list(limit=2, before_id=newest_first[4])
    assert [b.id for b in newer.data] == newest_first[2:4] and newer.has_more
    newest = client.messages.batches.list(limit=2, before_id=newest_first[2])
    assert [b.id for b in newest.data] == newest_first[:2] and not newest.has_more
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.list(limit=1001)
    both = httpx.get(
        f"{gateway.base_url}/v1/messages/batches",
        params={"after_id": ids[0], "before_id": ids[1]},
        headers={"x-api-key": TEST_KEY},
    )
    assert both.status_code == 400 and both.json()["error"]["type"] == "invalid_request_error"


def test_a_cancelled_batch_ends_with_what_ran_and_the_rest_canceled(
    start: Callable[..., InProcessGateway],
) -> None:
    # One item at a time, 100 ms each: 30 items take 3 s, far more than the
    # cancel needs to land once two are done.
    gateway = start({"ttft_ms": 100}, worker={"concurrency": 1, "sweep_s": 0.1})
    client = _client(gateway)
    created = client.messages.batches.create(
        requests=[{"custom_id": f"r{n}", "params": _params(f"q{n}")} for n in range(30)]  # type: ignore[misc]
    )
    wait_for(lambda: client.messages.batches.retrieve(created.id).request_counts.succeeded >= 2)
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(created.id)  # the SDK checks for one first
    early = httpx.get(
        f"{gateway.base_url}/v1/messages/batches/{created.id}/results",
        headers={"x-api-key": TEST_KEY},
    )
    assert early.status_code == 400 and "still" in early.json()["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.delete(created.id)

    cancelling = client.messages.batches.cancel(created.id)
    assert cancelling.processing_status in ("canceling", "ended")
    assert cancelling.cancel_initiated_at is not None
    done = _ended(client, created.id)
    counts = done.request_counts
    assert counts.succeeded >= 2 and counts.canceled >= 1
    assert counts.succeeded + counts.canceled == 30 and counts.errored == counts.processing == 0
    kinds = [r.result.type for r in client.messages.batches.results(done.id)]
    assert (
        kinds.count("succeeded") == counts.succeeded and kinds.count("canceled") == counts.canceled
    )
    again = client.messages.batches.cancel(done.id)  # asked twice: the same answer
    assert again.processing_status == "ended" and again.request_counts == counts


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "requests"),
        ({"requests": []}, "requests"),
        ({"requests": [{"custom_id": "a b", "params": {}}]}, "requests[0].custom_id"),
        ({"requests": [{"custom_id": "x" * 65, "params": {}}]}, "requests[0].custom_id"),
        (
            {"requests": [{"custom_id": "a", "params": {}}, {"custom_id": "a", "params": {}}]},
            "requests[1].custom_id",
        ),
        ({"requests": [{"custom_id": "a", "params": "hi"}]}, "requests[0].params"),
        ({"requests": [{"custom_id": "a", "params": {}, "extra": 1}]}, "requests[0].extra"),
        ({"requests": ["a"]}, "requests[0]"),
        ({"requests": [{"custom_id": "a", "params": {}}], "stream": True}, "stream"),
    ],
)
def test_a_malformed_batch_is_refused_naming_the_field(
    gateway: InProcessGateway, body: dict[str, Any], param: str
) -> None:
    refused = httpx.post(
        f"{gateway.base_url}/v1/messages/batches", json=body, headers={"x-api-key": TEST_KEY}
    )
    assert refused.status_code == 400, refused.text
    error = refused.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(param + ":"), error


def test_a_batch_too_many_requests_or_too_large_is_refused(
    start: Callable[..., InProcessGateway],
) -> None:
    gateway = start(max_requests=3, max_message_batch_bytes=4096)
    url, auth = f"{gateway.base_url}/v1/messages/batches", {"x-api-key": TEST_KEY}
    four = {"requests": [{"custom_id": f"r{n}", "params": _params("q")} for n in range(4)]}
    refused = httpx.post(url, json=four, headers=auth)
    assert refused.status_code == 400 and "at most 3" in refused.json()["error"]["message"]
    large = {"requests": [{"custom_id": "r", "params": _params("q" * 5000)}]}
    too_large = httpx.post(url, json=large, headers=auth)
    assert too_large.status_code == 413
    assert too_large.json()["error"]["type"] == "request_too_large"


def test_a_streaming_request_in_a_batch_is_its_own_error(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    created = client.messages.batches.create(
        requests=[
            {"custom_id": "streamed", "params": _params("q", stream=True)},  # type: ignore[typeddict-item]
            {"custom_id": "plain", "params": _params("q")},  # type: ignore[typeddict-item]
        ]
    )
    _ended(client, created.id)
    streamed, plain = list(client.messages.batches.results(created.id))
    assert streamed.result.type == "errored" and "stream" in streamed.result.error.error.message
    assert plain.result.type == "succeeded"


def test_a_batch_request_fills_the_cache_an_online_message_then_hits(
    start: Callable[..., InProcessGateway],
) -> None:
    # Items run as /v1/messages requests, so they share that edge's cache keys
    # (which include the dialect) and not chat's.
    gateway = start(cache=True)
    client = _client(gateway)
    params = _params("cache me in a batch", temperature=0)  # only those are cached
    created = client.messages.batches.create(requests=[{"custom_id": "a", "params": params}])  # type: ignore[list-item]
    _ended(client, created.id)
    (batched,) = list(client.messages.batches.results(created.id))
    assert batched.result.type == "succeeded"
    # This SDK's create() no longer names `temperature`; the API still takes it.
    asked = {k: v for k, v in params.items() if k != "temperature"}
    online = client.messages.with_raw_response.create(**asked, extra_body={"temperature": 0})
    assert online.headers["x-interlock-cache"] == "hit"
    assert online.parse().content == batched.result.message.content
    chat = httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        json={k: v for k, v in params.items() if k != "max_tokens"} | {"max_tokens": 16},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert chat.status_code == 200 and chat.headers["x-interlock-cache"] == "miss"


def test_message_batches_answer_503_in_anthropics_shape_when_batches_are_off(
    start: Callable[..., InProcessGateway],
) -> None:
    gateway = start(enabled=False)
    with pytest.raises(anthropic.InternalServerError) as caught:
        _client(gateway).messages.batches.list()
    assert caught.value.status_code == 503
    assert caught.value.body["type"] == "error"  # type: ignore[index]
    assert caught.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
