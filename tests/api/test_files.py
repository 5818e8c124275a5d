"""The OpenAI Files API with the official SDK: upload a batch input file,
list, retrieve, read back, delete; scoped to the key; bad files refused
naming the line."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest

from interlock.app import create_app
from interlock.config import parse_config
from tests.conftest import TEST_KEY, simulator_config
from tests.support.sdk_clients import closed_after_test
from tests.support.servers import InProcessGateway

# One in-process gateway for the module's tests (conftest checks its SQLite connections).
pytestmark = pytest.mark.shared_gateway

OTHER_KEY = "sk-other-files"


def _line(n: int, **changes: Any) -> dict[str, Any]:
    item = {
        "custom_id": f"request-{n}",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "sim", "messages": [{"role": "user", "content": f"hello {n}"}]},
    }
    return {**item, **changes}


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(item) for item in items) + b"\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    raw: dict[str, Any] = {
        **simulator_config(),
        "files": {
            "max_bytes": 64 * 1024,
            "max_lines": 100,
            "dir": str(tmp_path_factory.mktemp("blobs")),
        },
        "server": {"access_log": False},
        # Shared by the module's tests: no batch worker opening pool connections mid-test.
        "batch": {"enabled": False},
        "registry": {"enabled": False},
    }
    raw["keys"] = [*raw["keys"], {"name": "other", "key": OTHER_KEY}]
    gateway = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    yield gateway
    gateway.close()


def _client(gateway: InProcessGateway, key: str = TEST_KEY) -> openai.OpenAI:
    client = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=key, max_retries=0)
    return closed_after_test(client)


def test_the_sdk_uploads_lists_reads_and_deletes_a_batch_file(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    content = _jsonl([_line(n) for n in range(3)])
    uploaded = client.files.create(file=("requests.jsonl", io.BytesIO(content)), purpose="batch")
    assert uploaded.id.startswith("file-") and uploaded.object == "file"
    assert (uploaded.bytes, uploaded.filename, uploaded.purpose) == (
        len(content),
        "requests.jsonl",
        "batch",
    )
    assert client.files.retrieve(uploaded.id).id == uploaded.id
    assert uploaded.id in [f.id for f in client.files.list()]
    assert client.files.content(uploaded.id).content == content

    other = _client(gateway, OTHER_KEY)
    with pytest.raises(openai.NotFoundError):
        other.files.retrieve(uploaded.id)
    assert uploaded.id not in [f.id for f in other.files.list()]
    with pytest.raises(openai.NotFoundError):
        other.files.delete(uploaded.id)

    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(uploaded.id)


def test_listing_pages_with_after_and_limit(gateway: InProcessGateway) -> None:
    client = _client(gateway, OTHER_KEY)
    ids = [
        client.files.create(
            file=(f"f{n}.jsonl", io.BytesIO(_jsonl([_line(n)]))), purpose="batch"
        ).id
        for n in range(3)
    ]
    first = client.files.list(limit=2, order="asc")
    assert [f.id for f in first.data] == ids[:2] and first.has_more
    rest = client.files.list(limit=2, order="asc", after=ids[1])
    assert [f.id for f in rest.data] == ids[2:] and not rest.has_more


@pytest.mark.parametrize(
    ("items", "problem"),
    [
        ([_line(1), _line(1)], "Line 2: `custom_id` 'request-1' appears twice"),
        ([_line(1), _line(2, method="GET")], "Line 2: `method` must be"),
        ([_line(1, url="/v1/images")], "Line 1: `url` must be one of"),
        ([_line(1), _line(2, url="/v1/embeddings")], "Line 2: `url` /v1/embeddings differs"),
        ([_line(1, body=[])], "Line 1: `body` must be a JSON object"),
        ([_line(1, custom_id="")], "Line 1: `custom_id` must be a non-empty string"),
        ([], "The file has no requests"),
        ([_line(n) for n in range(101)], "Line 101: the file has more than 100 requests"),
    ],
)
def test_a_bad_batch_file_is_refused_naming_its_line(
    gateway: InProcessGateway, items: list[dict[str, Any]], problem: str
) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(gateway).files.create(
            file=("bad.jsonl", io.BytesIO(_jsonl(items))), purpose="batch"
        )
    error = info.value.body
    assert isinstance(error, dict) and error["param"] == "file"
    assert str(error["message"]).startswith(problem)


def test_a_line_that_is_not_json_is_named(gateway: InProcessGateway) -> None:
    content = _jsonl([_line(1)]) + b"{not json\n"
    with pytest.raises(openai.BadRequestError, match="Line 2: not valid JSON"):
        _client(gateway).files.create(file=("bad.jsonl", io.BytesIO(content)), purpose="batch")


def test_other_purposes_size_and_shape_are_refused(gateway: InProcessGateway) -> None:
    client = _client(gateway)
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("a.jsonl", io.BytesIO(_jsonl([_line(1)]))), purpose="fine-tune")
    big = _jsonl([_line(n, body={"pad": "x" * 1000}) for n in range(80)])  # over 64 KiB
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("big.jsonl", io.BytesIO(big)), purpose="batch")
    assert info.value.status_code == 413
    url = gateway.base_url + "/v1/files"
    auth = {"authorization": f"Bearer {TEST_KEY}"}
    not_multipart = httpx.post(
        url, content=b"{}", headers={**auth, "content-type": "application/json"}
    )
    assert not_multipart.status_code == 400
    assert set(not_multipart.json()["error"]) == {"message", "type", "param", "code"}
    assert httpx.get(url).status_code == 401


def test_files_survive_a_restart(tmp_path: Path) -> None:
    raw: dict[str, Any] = {
        **simulator_config(),
        "store": {"url": f"sqlite+aiosqlite:///{tmp_path / 'records.db'}"},
        "files": {"dir": str(tmp_path / "blobs")},
        "server": {"access_log": False},
    }
    content = _jsonl([_line(1)])
    first = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    try:
        file_id = (
            _client(first).files.create(file=("a.jsonl", io.BytesIO(content)), purpose="batch").id
        )
    finally:
        first.close()
    second = InProcessGateway(create_app(parse_config(raw, env={"TEST_KEY": TEST_KEY})))
    try:
        assert _client(second).files.content(file_id).content == content
    finally:
        second.close()
