"""Documents uploaded once (``/v1/files``, purpose ``user_data``) and named
by id in chat and Responses requests, online and in a batch's lines, with
the official ``openai`` SDK: the upstream gets the bytes inline, whichever
provider it is; another key's file, a batch file, and a file that is no
document are refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import orjson
import pytest

from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess
from tests.support.waiting import wait_for

OTHER_KEY = "sk-other-file-inputs"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
READ = f"I read a application/pdf document of {len(PDF)} bytes"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with provider_gateway(
        tmp_path_factory.mktemp("gw"),
        keys=[{"name": "other", "key": OTHER_KEY}],
        sections={"batch": {"worker": {"sweep_s": 0.1}}},  # batches on, for their lines
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def pdf_id(client: openai.OpenAI) -> str:
    return client.files.create(file=("report.pdf", PDF, "application/pdf"), purpose="user_data").id


def _asking(file: dict[str, Any]) -> Any:
    parts = [{"type": "file", "file": file}, {"type": "text", "text": "Summarise it."}]
    return [{"role": "user", "content": parts}]


@pytest.mark.parametrize("model", ["azure", "claude", "gemini", "bedrock"])
def test_a_chat_message_names_an_uploaded_pdf(
    client: openai.OpenAI, pdf_id: str, model: str
) -> None:
    answer = client.chat.completions.create(model=model, messages=_asking({"file_id": pdf_id}))
    assert answer.choices[0].message.content == READ


@pytest.mark.parametrize("model", ["claude", "gemini"])
def test_a_responses_input_file_names_an_uploaded_pdf(
    client: openai.OpenAI, pdf_id: str, model: str
) -> None:
    content: Any = [
        {"type": "input_file", "file_id": pdf_id},
        {"type": "input_text", "text": "Summarise it."},
    ]
    first = client.responses.create(model=model, input=[{"role": "user", "content": content}])
    assert first.output_text == READ
    # The stored conversation names the file; continuing it reads the file again.
    again = client.responses.create(model=model, input="And?", previous_response_id=first.id)
    assert again.status == "completed"


def test_files_that_cannot_be_named_are_refused(
    client: openai.OpenAI, gateway: GatewayProcess, pdf_id: str
) -> None:
    param = "messages[0].content[0].file.file_id"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="azure", messages=_asking({"file_id": "file-none"}))
    assert missing.value.body["param"] == param  # type: ignore[index]
    with openai_client(gateway, OTHER_KEY) as other, pytest.raises(openai.NotFoundError):
        other.chat.completions.create(model="azure", messages=_asking({"file_id": pdf_id}))
    batch = client.files.create(
        file=(
            "in.jsonl",
            b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", '
            b'"body": {"model": "sim", "messages": [{"role": "user", "content": "x"}]}}\n',
        ),
        purpose="batch",
    )
    image = client.files.create(file=("a.png", b"\x89PNG\r\n", "image/png"), purpose="user_data")
    for refused in (batch.id, image.id):
        with pytest.raises(openai.BadRequestError) as caught:
            client.chat.completions.create(model="azure", messages=_asking({"file_id": refused}))
        assert caught.value.body["param"] == param  # type: ignore[index]
    with pytest.raises(openai.NotFoundError) as in_responses:
        client.responses.create(
            model="claude",
            input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-none"}]}],
        )
    assert in_responses.value.body["param"] == "input"  # type: ignore[index]


def test_batch_lines_name_uploaded_files_too(client: openai.OpenAI, pdf_id: str) -> None:
    responses_input = [
        {"role": "user", "content": [{"type": "input_file", "file_id": pdf_id}]},
    ]
    lines = [
        (
            "chat",
            "/v1/chat/completions",
            {"model": "gemini", "messages": _asking({"file_id": pdf_id})},
        ),
        ("responses", "/v1/responses", {"model": "claude", "input": responses_input}),
        (
            "missing",
            "/v1/chat/completions",
            {"model": "azure", "messages": _asking({"file_id": "file-none"})},
        ),
    ]
    found = {}
    for custom_id, url, body in lines:  # a batch names one endpoint
        jsonl = orjson.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": body})
        uploaded = client.files.create(file=("in.jsonl", jsonl + b"\n"), purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id,
            endpoint=url,  # type: ignore[arg-type]
            completion_window="24h",
        )

        def ended(batch_id: str = batch.id) -> Any:
            now = client.batches.retrieve(batch_id)
            return now if now.status in ("completed", "failed", "expired", "cancelled") else None

        done = wait_for(ended, what=f"the {custom_id} batch")
        assert done.status == "completed"
        for file_id in (done.output_file_id, done.error_file_id):
            if file_id is not None:
                for text in client.files.content(file_id).text.splitlines():
                    line = orjson.loads(text)
                    found[line["custom_id"]] = line["response"]
    assert found["chat"]["body"]["choices"][0]["message"]["content"] == READ
    [message] = found["responses"]["body"]["output"]
    assert message["content"][0]["text"] == READ
    missing = found["missing"]
    assert missing["status_code"] == 404
    assert missing["body"]["error"]["param"] == "messages[0].content[0].file.file_id"
