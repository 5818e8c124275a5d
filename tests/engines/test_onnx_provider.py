"""``provider: onnx`` end to end: v2 requests in, v2 responses out, answers
equal to numpy's own softmax(xW + b), batching on or off."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import numpy as np

from interlock.config import DeploymentConfig
from interlock.errors import (
    InvalidRequest,
    ProviderError,
    ServiceUnavailable,
    UnsupportedOperation,
)
from interlock.providers.base import CallContext
from interlock.providers.onnx import EXTRA_MISSING, OnnxProvider
from tests.engines.conftest import ModelFile
from tests.support.tiny_onnx import BIAS, WEIGHTS, build_pairs_model, build_two_input_model

CTX = CallContext("req_test", "clf")
Build = Callable[..., OnnxProvider]


def deployment(model: str = "tiny-classifier", **fields: Any) -> DeploymentConfig:
    return DeploymentConfig(id="onnx-1", provider="onnx", model=model, **fields)


@pytest.fixture
async def started() -> AsyncIterator[Callable[..., Any]]:
    providers: list[OnnxProvider] = []

    async def start(model: str = "tiny-classifier", **fields: Any) -> OnnxProvider:
        provider = OnnxProvider(deployment(model, **fields))
        providers.append(provider)
        await provider.start()
        return provider

    yield start
    for provider in providers:
        await provider.aclose()


def expected(features: np.ndarray) -> np.ndarray:
    logits = features.astype(np.float64) @ WEIGHTS + BIAS
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def request(features: np.ndarray, **extra: Any) -> dict[str, Any]:
    tensor = {
        "name": "features",
        "datatype": "FP32",
        "shape": list(features.shape),
        "data": features.ravel().tolist(),
    }
    return {"model": "clf", "inputs": [tensor], **extra}


FEATURES = np.array(
    [[0.5, -1.0, 2.0, 0.25], [1.0, 1.0, 1.0, 1.0], [-3.0, 0.0, 0.5, 2.0]], dtype=np.float32
)


async def test_infer_answers_softmax_of_x_w_plus_b(started: Callable[..., Any]) -> None:
    provider = await started(version="7")
    response = await provider.infer(request(FEATURES, id="abc"), CTX)
    assert response["model_name"] == "clf"
    assert response["model_version"] == "7"
    assert response["id"] == "abc"
    [out] = response["outputs"]
    assert out["name"] == "probabilities"
    assert out["datatype"] == "FP32" and out["shape"] == [3, 3]
    got = np.array(out["data"]).reshape(3, 3)
    np.testing.assert_allclose(got, expected(FEATURES), atol=1e-6)


async def test_no_id_asked_no_id_answered(started: Callable[..., Any]) -> None:
    provider = await started()
    response = await provider.infer(request(FEATURES[:1]), CTX)
    assert "id" not in response and response["model_version"] == "1"


async def test_batching_on_and_off_give_the_same_answers(started: Callable[..., Any]) -> None:
    rows = [FEATURES[i : i + 1] for i in range(3)] + [FEATURES[:2]]
    answers, batches = [], []
    batched = {"max_batch_size": 5, "max_wait_ms": 1000, "run_when_idle": False}
    for params in (batched, {"max_batch_size": 1}):
        provider = await started(params=params)
        sizes: list[int] = []
        provider.on_batch = sizes.append  # settable after start
        responses = await asyncio.gather(*(provider.infer(request(r), CTX) for r in rows))
        answers.append([np.array(r["outputs"][0]["data"]) for r in responses])
        batches.append(sorted(sizes))
    # Five rows fill one batch at once; unbatched, each request runs alone.
    assert batches == [[5], [1, 1, 1, 2]]
    for batched, alone, features in zip(*answers, rows, strict=True):
        np.testing.assert_allclose(batched, alone, atol=1e-6)
        np.testing.assert_allclose(alone.reshape(-1, 3), expected(features), atol=1e-6)


async def test_metadata_and_readiness(started: Callable[..., Any]) -> None:
    provider = OnnxProvider(deployment())
    assert not await provider.model_ready(CTX)
    with pytest.raises(ServiceUnavailable):
        await provider.infer(request(FEATURES), CTX)
    provider = await started()
    assert await provider.model_ready(CTX)
    metadata = await provider.model_metadata(CTX)
    assert metadata["platform"] == "onnxruntime_onnx"
    assert metadata["versions"] == ["1"]
    assert metadata["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    await provider.aclose()
    assert not await provider.model_ready(CTX)


async def test_a_bad_tensor_is_the_callers_400(started: Callable[..., Any]) -> None:
    provider = await started()
    body = request(FEATURES)
    body["inputs"][0]["shape"] = [4, 3]
    with pytest.raises(InvalidRequest) as caught:
        await provider.infer(body, CTX)
    assert caught.value.param == "inputs[0].shape"
    assert "'features'" in caught.value.message


async def test_requested_outputs_come_in_the_order_asked(
    started: Callable[..., Any], model_file: ModelFile
) -> None:
    provider = await started(str(model_file(build_two_input_model)))
    body = {
        "model": "two",
        "inputs": [
            {"name": "ids", "datatype": "INT64", "shape": [1, 2], "data": [3, 4]},
            {"name": "scale", "datatype": "FP32", "shape": [1, 1], "data": [0.5]},
        ],
        "outputs": [{"name": "doubled"}, {"name": "total"}],
    }
    response = await provider.infer(body, CTX)
    assert response["outputs"] == [
        {"name": "doubled", "datatype": "INT64", "shape": [1, 2], "data": [6, 8]},
        {"name": "total", "datatype": "FP32", "shape": [1, 1], "data": [3.5]},
    ]
    body["outputs"] = [{"name": "sum"}]
    with pytest.raises(InvalidRequest) as caught:
        await provider.infer(body, CTX)
    assert caught.value.param == "outputs[0].name"


async def test_a_failure_inside_onnxruntime_is_the_deployments(
    started: Callable[..., Any], model_file: ModelFile
) -> None:
    provider = await started(str(model_file(build_pairs_model)))
    odd = {
        "model": "p",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3], "data": [1, 2, 3]}],
    }
    with pytest.raises(ProviderError) as caught:
        await provider.infer(odd, CTX)
    assert caught.value.status_code == 502 and caught.value.deployment == "onnx-1"


async def test_a_model_whose_first_dimension_is_not_the_batch_fails_batched(
    started: Callable[..., Any], model_file: ModelFile
) -> None:
    # `pairs` has a dynamic first dimension that is not the batch: alone it
    # works, batched its rows cannot be split back, and the error says what to set.
    provider = await started(
        str(model_file(build_pairs_model)),
        params={"max_wait_ms": 1000, "max_batch_size": 2, "run_when_idle": False},
    )
    body = {
        "model": "p",
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}],
    }
    outcomes = await asyncio.gather(
        *(provider.infer(body, CTX) for _ in range(2)), return_exceptions=True
    )
    assert all(isinstance(o, ProviderError) for o in outcomes)
    assert "max_batch_size: 1" in str(outcomes[0])


async def test_chat_is_refused(started: Callable[..., Any]) -> None:
    provider = OnnxProvider(deployment())
    with pytest.raises(UnsupportedOperation):
        await provider.chat({}, CTX)
    with pytest.raises(UnsupportedOperation):
        async for _ in provider.stream_chat({}, CTX):
            pass


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"max_batch_size": 0}, "params.max_batch_size"),
        ({"max_wait_ms": -1}, "params.max_wait_ms"),
        ({"executor_threads": "2"}, "params.executor_threads"),
        ({"batch": 4}, "params.batch"),
    ],
)
def test_bad_params_are_refused_at_construction(params: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        OnnxProvider(deployment(params=params))


def test_a_missing_model_file_is_refused() -> None:
    with pytest.raises(ValueError, match="no ONNX model file"):
        OnnxProvider(deployment("/nowhere/model.onnx"))


def test_without_the_extra_the_provider_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ValueError) as caught:
        OnnxProvider(deployment())
    assert str(caught.value) == EXTRA_MISSING


def test_the_registry_builds_it() -> None:
    from interlock.providers.registry import build_provider
    from interlock.tokens import default_counter

    assert isinstance(build_provider(deployment(), default_counter()), OnnxProvider)
