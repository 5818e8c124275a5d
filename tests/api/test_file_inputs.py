"""Documents uploaded once (``/v1/files``, purpose ``user_data``) and named
by id in chat and Responses requests, with the official ``openai`` SDK: the
upstream gets the bytes inline, whichever provider it is; another key's
file, a batch file, and a file that is no document are refused by name."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.support.openai_clients import openai_client
from tests.support.provider_fleet import provider_gateway
from tests.support.servers import GatewayProcess

OTHER_KEY = "sk-other-file-inputs"
PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
READ = f"I read a application/pdf document of {len(PDF)} bytes"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with provider_gateway(
        tmp_path_factory.mktemp("gw"), keys=[{"name": "other", "key": OTHER_KEY}]
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
