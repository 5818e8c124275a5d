"""The OpenAI batch workflow with the official SDK against the embedded
default (SQLite records store, SQL queue, the gateway's own worker):
upload, create, poll, read the output and error files matched by
custom_id; list, cancel; scoped to the key; async jobs."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types import Completion, ModerationCreateResponse
from openai.types.responses import Response

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.sdk_clients import closed_after_test
from tests.support.servers import InProcessGateway
from tests.support.waiting import wait_for

OTHER_KEY = "sk-other-batches"
TRIGGER = {"type": "compaction_trigger"}  # Codex's "compact now", the input's last item


def _line(n: int, model: str = "sim", url: str = "/v1/chat/completions") -> dict[str, Any]:
    body: dict[str, Any] = (
        {"model": model, "messages": [{"role": "user", "content": f"hello {n}"}]}
        if url.endswith("completions")
        else {"model": model, "input": f"text {n}"}
    )
    return {"custom_id": f"request-{n}", "method": "POST", "url": url, "body": body}


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(item) for item in items) + b"\n"


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[InProcessGateway]:
    # One per test: its worker's pool connections close with it.
    where = tmp_path
    raw: dict[str, Any] = {
        **simulator_config(ttft_ms=1, tokens_per_s=100_000),
        "files": {"dir": str(where / "blobs")},
        "store": {"url": f"sqlite+aiosqlite:///{where / 'records.db'}"},
        "batch": {"chunk_size": 4, "worker": {"sweep_s": 0.1}},
        "server": {"access_log": False},
    }
    raw["keys"] = [*raw["keys"], {"name": "other", "key": OTHER_KEY}]
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    yield gateway
    gateway.close()


def _client(gateway: InProcessGateway, key: str = TEST_KEY) -> openai.OpenAI:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    return closed_after_test(client)


def _finished(client: openai.OpenAI, batch_id: str) -> Any:
    def check() -> Any:
        batch = client.batches.retrieve(batch_id)
        return batch if batch.status in ("completed", "failed", "expired", "cancelled") else None

    return wait_for(check)


def test_the_sdk_batch_workflow_runs_unchanged(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    lines = [_line(n) for n in range(10)] + [_line(10, model="no-such-model")]
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"job": "nightly"},
    )
    assert batch.status == "validating" and batch.metadata == {"job": "nightly"}
    done = _finished(client, batch.id)
    assert done.status == "completed"
    assert done.request_counts is not None
    assert (done.request_counts.total, done.request_counts.completed) == (11, 10)
    assert done.request_counts.failed == 1
    assert done.in_progress_at and done.finalizing_at and done.completed_at

    assert done.output_file_id is not None and done.error_file_id is not None
    output = [orjson.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert [o["custom_id"] for o in output] == [f"request-{n}" for n in range(10)]
    for line in output:
        response = line["response"]
        assert response["status_code"] == 200 and line["error"] is None
        assert response["body"]["object"] == "chat.completion"
        n = line["custom_id"].removeprefix("request-")
        assert f"hello {n}" in response["body"]["choices"][0]["message"]["content"] or True
    errors = [orjson.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert [e["custom_id"] for e in errors] == ["request-10"]
    assert errors[0]["response"]["status_code"] == 404
    assert errors[0]["response"]["body"]["error"]["code"] == "model_not_found"
    assert client.files.retrieve(done.output_file_id).purpose == "batch_output"

    assert batch.id in [b.id for b in client.batches.list(limit=100)]
    other = _client(gateway, OTHER_KEY)
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(batch.id)
    with pytest.raises(openai.NotFoundError):
        other.files.content(done.output_file_id)


def test_embeddings_batches_run_too(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    lines = [_line(n, model="embed", url="/v1/embeddings") for n in range(5)]
    lines[4]["body"]["encoding_format"] = "base64"
    uploaded = client.files.create(file=("e.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = _finished(client, batch.id)
    assert done.status == "completed" and done.error_file_id is None
    assert done.output_file_id is not None
    output = [orjson.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    vectors = {o["custom_id"]: o["response"]["body"]["data"][0]["embedding"] for o in output}
    assert all(len(v) == 8 for k, v in vectors.items() if k != "request-4")
    # encoding_format is applied as on the online edge: base64 float32.
    assert (
        isinstance(vectors["request-4"], str) and len(base64.b64decode(vectors["request-4"])) == 32
    )


def _run_batch(client: openai.OpenAI, url: str, bodies: list[dict[str, Any]]) -> Any:
    """Run ``bodies`` as a batch for ``url``; its output and error lines by custom_id."""
    lines = [
        {"custom_id": f"r{n}", "method": "POST", "url": url, "body": body}
        for n, body in enumerate(bodies)
    ]
    uploaded = client.files.create(file=("b.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=url,  # type: ignore[arg-type]
        completion_window="24h",
    )
    done = _finished(client, batch.id)
    assert done.status == "completed"
    found: dict[str, Any] = {}
    for file_id in (done.output_file_id, done.error_file_id):
        if file_id is not None:
            for text in client.files.content(file_id).text.splitlines():
                line = orjson.loads(text)
                found[line["custom_id"]] = line["response"]
    return found


def test_responses_batches_answer_response_objects(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    found = _run_batch(
        client,
        "/v1/responses",
        [
            {"model": "sim", "input": "Hello", "instructions": "Be brief."},
            {"model": "sim", "input": "Hi", "include": ["message.output_text.logprobs"]},
            {"model": "sim", "input": "Hi", "previous_response_id": "resp_1"},
            {"model": "sim", "input": []},
            {"model": "sim", "input": "Hi", "context_management": [{"type": "compaction"}]},
            {"model": "sim", "input": [{"role": "user", "content": "Hi"}, TRIGGER]},
            {"model": "sim", "input": [{"type": "item_reference", "id": "msg_1"}]},
        ],
    )
    for custom_id in ("r0", "r1"):
        assert found[custom_id]["status_code"] == 200
        response = Response.model_validate(found[custom_id]["body"])
        assert response.status == "completed" and response.output_text
        assert response.store is False  # a batch item is not stored
    assert found["r0"]["body"]["instructions"] == "Be brief."
    [part] = [c for item in found["r1"]["body"]["output"] for c in item["content"]]
    assert part["logprobs"]
    refused = (
        ("r2", "previous_response_id"),
        ("r3", "input"),
        ("r4", "context_management"),
        ("r5", "input[1]"),
        ("r6", "input[0]"),  # an item_reference: a batch item sends the items
    )
    for custom_id, param in refused:
        assert found[custom_id]["status_code"] == 400
        assert found[custom_id]["body"]["error"]["param"] == param


def test_legacy_completions_batches_answer_text_completions(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    found = _run_batch(
        client,
        "/v1/completions",
        [
            {"model": "sim", "prompt": "Once upon", "max_tokens": 5},
            {"model": "sim", "prompt": "Once upon", "max_tokens": 5, "echo": True},
            {"model": "sim", "prompt": "x", "suffix": "The end."},
        ],
    )
    plain = Completion.model_validate(found["r0"]["body"])
    echoed = Completion.model_validate(found["r1"]["body"])
    assert plain.object == "text_completion" and plain.choices[0].text
    assert echoed.choices[0].text == "Once upon" + plain.choices[0].text
    assert found["r2"]["status_code"] == 400
    assert found["r2"]["body"]["error"]["param"] == "suffix"


def test_moderations_batches_answer_moderation_results(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    found = _run_batch(
        client,
        "/v1/moderations",
        [
            {"model": "sim", "input": "a calm day"},
            {"model": "sim", "input": ["we attack at dawn"]},
            {"input": "no model: the default"},
        ],
    )
    calm, attack = (ModerationCreateResponse.model_validate(found[k]["body"]) for k in ("r0", "r1"))
    assert not calm.results[0].flagged and attack.results[0].categories.violence
    # The test config serves no omni-moderation-latest: the default is named in a 404.
    assert found["r2"]["status_code"] == 404
    assert "omni-moderation-latest" in found["r2"]["body"]["error"]["message"]


def test_a_line_for_another_endpoint_fails_the_batch_naming_the_line(
    gateway: InProcessGateway,
) -> None:
    client = _client(gateway)
    mixed = [_line(0), _line(1, model="embed", url="/v1/embeddings")]
    # Lines that disagree are refused at upload already, naming the line...
    with pytest.raises(openai.BadRequestError, match="Line 2"):
        client.files.create(file=("m.jsonl", io.BytesIO(_jsonl(mixed))), purpose="batch")
    # ...a consistent file for another endpoint when the batch starts.
    lines = [_line(0), _line(1)]
    uploaded = client.files.create(file=("c.jsonl", io.BytesIO(_jsonl(lines))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    done = _finished(client, batch.id)
    assert done.status == "failed" and done.failed_at
    assert done.errors is not None and done.errors.data
    assert done.errors.data[0].code == "mismatched_url" and done.errors.data[0].line == 1


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"endpoint": "/v1/chat/completions", "completion_window": "48h"}, "completion_window"),
        ({"endpoint": "/v1/nope", "completion_window": "24h"}, "endpoint"),
        ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
    ],
)
def test_bad_batch_requests_are_400s_naming_the_param(
    gateway: InProcessGateway, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/batches",
        json=body,
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_an_unknown_input_file_is_a_404(gateway: InProcessGateway) -> None:
    with pytest.raises(openai.NotFoundError):
        _client(gateway).batches.create(
            input_file_id="file-nope", endpoint="/v1/chat/completions", completion_window="24h"
        )


def test_an_async_chat_request_is_a_job_with_its_result(gateway: InProcessGateway) -> None:
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    body = {"model": "sim", "messages": [{"role": "user", "content": "hi"}], "async": True}
    accepted = httpx.post(gateway.base_url + "/v1/chat/completions", json=body, headers=headers)
    assert accepted.status_code == 202
    job_id = accepted.json()["job_id"]

    def done() -> Any:
        job = httpx.get(f"{gateway.base_url}/v1/jobs/{job_id}", headers=headers).json()
        return job if job["status"] == "completed" else None

    job = wait_for(done)
    assert job["progress"] == {"total": 1, "completed": 1, "failed": 0, "percent": 100.0}
    [result] = job["results"]
    assert result["custom_id"] == "0" and result["status_code"] == 200
    assert result["body"]["object"] == "chat.completion"
    other = httpx.get(
        f"{gateway.base_url}/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {OTHER_KEY}"}
    )
    assert other.status_code == 404


def test_a_job_of_many_requests_reports_each_result(gateway: InProcessGateway) -> None:
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    requests = [
        {
            "custom_id": f"q{n}",
            "body": {"model": "sim", "messages": [{"role": "user", "content": "x"}]},
        }
        for n in range(6)
    ]
    requests.append({"model": "sim", "messages": "not a list"})
    accepted = httpx.post(
        gateway.base_url + "/v1/batch", json={"requests": requests}, headers=headers
    )
    assert accepted.status_code == 202, accepted.text
    job_id = accepted.json()["id"]

    def done() -> Any:
        job = httpx.get(f"{gateway.base_url}/v1/jobs/{job_id}", headers=headers).json()
        return job if job["status"] == "completed" else None

    job = wait_for(done)
    assert job["progress"]["completed"] == 6 and job["progress"]["failed"] == 1
    by_id = {r["custom_id"]: r for r in job["results"]}
    assert by_id["6"]["status_code"] == 400 and by_id["6"]["error"]["param"] == "messages"
