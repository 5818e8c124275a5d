"""An ONNX model's signature, metadata and whole-request checks, on real
onnxruntime sessions of the tiny models built in ``tests.support.tiny_onnx``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

import numpy as np

from interlock.engines import MODELS_DIR, EngineError
from interlock.engines.onnx_model import OnnxModel
from interlock.engines.tensors import TensorSpec
from interlock.errors import InvalidRequest
from tests.engines.conftest import ModelFile
from tests.support import tiny_onnx


def ids(values: list[list[int]], name: str = "ids") -> dict[str, Any]:
    shape = [len(values), len(values[0])]
    return {"name": name, "datatype": "INT64", "shape": shape, "data": values}


def scale(values: list[float], name: str = "scale") -> dict[str, Any]:
    return {"name": name, "datatype": "FP32", "shape": [len(values), 1], "data": values}


@pytest.fixture
def two_inputs(model_file: ModelFile) -> OnnxModel:
    return OnnxModel.load(model_file(tiny_onnx.build_two_input_model))


def refused(call: Any, *args: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        call(*args)
    return caught.value


def test_the_bundled_model_is_a_fresh_build() -> None:
    # Regenerate with `python -m tests.support.tiny_onnx` when this fails.
    bundled = MODELS_DIR / "tiny-classifier.onnx"
    assert bundled == tiny_onnx.BUNDLED_PATH
    assert bundled.read_bytes() == tiny_onnx.build_tiny_classifier()


def test_signature_and_metadata_of_the_classifier() -> None:
    model = OnnxModel.load(MODELS_DIR / "tiny-classifier.onnx")
    assert model.signature.inputs == (TensorSpec("features", "FP32", (-1, 4), ("batch", None)),)
    assert model.batchable
    assert model.metadata("clf", ["1"]) == {
        "name": "clf",
        "versions": ["1"],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
    }


def test_a_fixed_first_dimension_is_not_batchable(model_file: ModelFile) -> None:
    model = OnnxModel.load(model_file(tiny_onnx.build_fixed_batch_model))
    assert model.signature.inputs[0].shape == (1, 4)
    assert not model.batchable


def test_two_inputs_run_and_every_output_comes_back(two_inputs: OnnxModel) -> None:
    assert two_inputs.batchable
    feeds = two_inputs.decode_inputs([scale([1.0, 0.5]), ids([[1, 2, 3], [4, 5, 6]])])
    out = two_inputs.run(feeds)
    assert list(out) == ["total", "doubled"]
    assert out["total"].tolist() == [[6.0], [7.5]]
    assert out["doubled"].dtype == np.int64 and out["doubled"].tolist() == [[2, 4, 6], [8, 10, 12]]


def test_unknown_input_is_named(two_inputs: OnnxModel) -> None:
    error = refused(two_inputs.decode_inputs, [ids([[1]]), scale([1.0], name="scales")])
    assert error.param == "inputs[1].name"
    assert "'scales'" in error.message and "'scale'" in error.message


def test_duplicate_input_is_refused(two_inputs: OnnxModel) -> None:
    error = refused(two_inputs.decode_inputs, [ids([[1]]), ids([[2]]), scale([1.0])])
    assert error.param == "inputs[1].name"
    assert "'ids'" in error.message


def test_missing_input_is_named(two_inputs: OnnxModel) -> None:
    error = refused(two_inputs.decode_inputs, [ids([[1]])])
    assert error.param == "inputs"
    assert error.code == "missing_required_parameter"
    assert "'scale'" in error.message


def test_a_tensor_error_names_its_index(two_inputs: OnnxModel) -> None:
    wrong = {**scale([1.0]), "datatype": "FP64"}
    error = refused(two_inputs.decode_inputs, [ids([[1]]), wrong])
    assert error.param == "inputs[1].datatype"


def test_inputs_must_agree_on_a_shared_dimension(two_inputs: OnnxModel) -> None:
    error = refused(two_inputs.decode_inputs, [ids([[1], [2]]), scale([1.0, 2.0, 3.0])])
    assert error.param == "inputs[1].shape"
    assert "'batch'" in error.message and "'ids'" in error.message


def test_requested_outputs(two_inputs: OnnxModel) -> None:
    assert two_inputs.requested_outputs(None) == ["total", "doubled"]
    assert two_inputs.requested_outputs([{"name": "doubled"}, {"name": "total"}]) == [
        "doubled",
        "total",
    ]
    unknown = refused(two_inputs.requested_outputs, [{"name": "total"}, {"name": "sum"}])
    assert unknown.param == "outputs[1].name" and "'sum'" in unknown.message
    twice = refused(two_inputs.requested_outputs, [{"name": "total"}, {"name": "total"}])
    assert twice.param == "outputs[1].name"


def test_a_failure_inside_onnxruntime_is_an_engine_error(model_file: ModelFile) -> None:
    model = OnnxModel.load(model_file(tiny_onnx.build_pairs_model))
    assert model.run({"x": np.zeros((1, 4), dtype=np.float32)})["pairs"].shape == (2, 2)
    with pytest.raises(EngineError, match="onnxruntime failed"):
        model.run({"x": np.zeros((1, 3), dtype=np.float32)})


def test_strings_pass_through(model_file: ModelFile) -> None:
    model = OnnxModel.load(model_file(tiny_onnx.build_string_model))
    feeds = model.decode_inputs(
        [{"name": "text", "datatype": "BYTES", "shape": [2], "data": ["a", "é"]}]
    )
    assert model.run(feeds)["same"].tolist() == ["a", "é"]


def test_a_file_that_is_not_a_model_cannot_load(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="cannot load ONNX model"):
        OnnxModel.load(path)
