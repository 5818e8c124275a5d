"""The exported all-MiniLM-L6-v2, registered as a version and served by the
in-process ONNX engine through a running gateway: ``/v1/embeddings`` (the
official SDK) gives sentence-transformers' vectors (max absolute difference
<= 1e-4, cosine >= 0.9999 per text), and ``/v1/infer`` the raw hidden
states. Skipped without the optional extras (see conftest.py)."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TEST_KEY
from tests.support.admin_gateway import admin_gateway
from tests.support.servers import InProcessGateway

np = pytest.importorskip("numpy")

ADMIN_KEY = "sk-admin-minilm"
TEXTS = [
    "How do I reset my password?",
    "Grüße aus Köln: naïve café, résumé, Straße.",
    "The quick brown fox jumps over the lazy dog. " * 60,  # cut at 256 word pieces
]


@pytest.fixture
def gateway(exported: Path, tmp_path: Path) -> Iterator[InProcessGateway]:
    pytest.importorskip("tokenizers")
    gateway = admin_gateway(tmp_path, ADMIN_KEY)
    try:
        _register(gateway, exported)
        yield gateway
    finally:
        gateway.close()


def _register(gateway: InProcessGateway, exported: Path) -> None:
    registered = httpx.post(
        gateway.base_url + "/admin/models",
        headers={"authorization": f"Bearer {ADMIN_KEY}"},
        json={
            "name": "minilm",
            "version": "onnx-1",
            "kind": "embedding",
            "provider": "onnx",
            "upstream_model": str(exported),
            "status": "live",
        },
        timeout=60,
    )
    assert registered.status_code == 201, registered.text


def test_embeddings_through_the_gateway_match_pytorch(
    gateway: InProcessGateway, reference: Any
) -> None:
    with openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=TEST_KEY, max_retries=0) as sdk:
        answer = sdk.embeddings.create(model="minilm", input=TEXTS)
        as_base64 = sdk.embeddings.create(model="minilm", input=TEXTS[0], encoding_format="base64")
    served = np.array([item.embedding for item in answer.data])
    expected = np.array(reference.embed(TEXTS))
    assert served.shape == (3, 384)
    assert np.abs(served - expected).max() <= 1e-4
    cosine = (served * expected).sum(axis=1) / (
        np.linalg.norm(served, axis=1) * np.linalg.norm(expected, axis=1)
    )
    assert cosine.min() >= 0.9999
    assert answer.usage.prompt_tokens == sum(reference.token_counts(TEXTS))
    packed = base64.b64decode(str(as_base64.data[0].embedding))  # the SDK leaves it encoded
    assert np.abs(np.frombuffer(packed, dtype="<f4") - expected[0]).max() <= 1e-4


def test_the_same_version_answers_tensor_inference(
    gateway: InProcessGateway, exported: Path
) -> None:
    from interlock.engines.minilm_onnx import TextEncoder

    feeds = TextEncoder(exported).tokenize(TEXTS[:2])
    inputs = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": "INT64",
            "data": array.ravel().tolist(),
        }
        for name, array in feeds.items()
    ]
    answer = httpx.post(
        gateway.base_url + "/v1/infer",
        headers={"authorization": f"Bearer {TEST_KEY}"},
        json={"model": "minilm", "inputs": inputs},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    (hidden,) = answer.json()["outputs"]
    rows, tokens = feeds["input_ids"].shape
    assert (hidden["name"], hidden["shape"]) == ("last_hidden_state", [rows, tokens, 384])
    meta = httpx.get(
        gateway.base_url + "/v1/models/minilm/versions/onnx-1",
        headers={"authorization": f"Bearer {TEST_KEY}"},
    ).json()
    assert [i["name"] for i in meta["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
