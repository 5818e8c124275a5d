"""v2 tensors to arrays and back: every refusal is a 400 naming the tensor
and the parameter to fix."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("numpy")

import numpy as np

from interlock.engines.tensors import (
    ORT_TO_V2,
    V2_TO_NUMPY,
    TensorSpec,
    decode_input,
    encode_output,
)
from interlock.errors import InvalidRequest
from interlock.pipeline.schemas import DATATYPES

FEATURES = TensorSpec("features", "FP32", (-1, 4))


def tensor(
    datatype: str, shape: list[int], data: list[Any], name: str = "features"
) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def refusal(index: int, body: dict[str, Any], spec: TensorSpec = FEATURES) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        decode_input(index, body, spec)
    assert caught.value.status_code == 400
    assert f"'{spec.name}'" in caught.value.message
    return caught.value


def test_every_v2_datatype_has_a_dtype_and_an_onnx_type() -> None:
    assert set(V2_TO_NUMPY) == set(DATATYPES)
    assert set(ORT_TO_V2.values()) == set(DATATYPES)


def test_a_valid_tensor_decodes_in_row_major_order() -> None:
    flat = decode_input(0, tensor("FP32", [2, 4], [1, 2, 3, 4, 5, 6, 7, 8.5]), FEATURES)
    nested = decode_input(0, tensor("FP32", [2, 4], [[1, 2, 3, 4], [5, 6, 7, 8.5]]), FEATURES)
    assert flat.dtype == np.float32 and flat.shape == (2, 4)
    assert flat[1, 3] == 8.5
    np.testing.assert_array_equal(flat, nested)


def test_a_dynamic_dimension_takes_any_size_even_zero() -> None:
    assert decode_input(0, tensor("FP32", [0, 4], []), FEATURES).shape == (0, 4)
    assert decode_input(0, tensor("FP32", [3, 4], [0.0] * 12), FEATURES).shape == (3, 4)


def test_wrong_datatype_names_tensor_and_both_types() -> None:
    error = refusal(2, tensor("INT64", [1, 4], [1, 2, 3, 4]))
    assert error.param == "inputs[2].datatype"
    assert "FP32" in error.message and "INT64" in error.message


@pytest.mark.parametrize("shape", [[4], [1, 4, 1], [1, 5]])
def test_wrong_rank_or_fixed_dimension_is_a_shape_error(shape: list[int]) -> None:
    count = int(np.prod(shape))
    error = refusal(1, tensor("FP32", shape, [0.0] * count))
    assert error.param == "inputs[1].shape"
    assert "[-1, 4]" in error.message


@pytest.mark.parametrize(
    ("datatype", "value"),
    [
        ("FP32", "1.5"),  # numpy would convert it; JSON says it is a string
        ("FP32", None),
        ("INT64", 1.5),
        ("INT64", True),
        ("BOOL", 1),
        ("BYTES", 3),
    ],
)
def test_a_value_of_the_wrong_kind_is_a_data_error(datatype: str, value: Any) -> None:
    spec = TensorSpec("x", datatype, (2,))
    error = refusal(0, tensor(datatype, [2], [value, value], name="x"), spec)
    assert error.param == "inputs[0].data"
    assert repr(value) in error.message


@pytest.mark.parametrize(
    ("datatype", "value"),
    [("UINT8", 256), ("UINT32", -1), ("INT8", -129), ("INT64", 2**63), ("FP16", 1e6)],
)
def test_a_value_out_of_range_is_a_data_error(datatype: str, value: Any) -> None:
    spec = TensorSpec("x", datatype, (1,))
    error = refusal(3, tensor(datatype, [1], [value], name="x"), spec)
    assert error.param == "inputs[3].data"
    assert datatype in error.message


def test_numbers_in_float_tensors_may_be_integers() -> None:
    array = decode_input(0, tensor("FP64", [2], [1, 2.5], name="x"), TensorSpec("x", "FP64", (2,)))
    assert array.dtype == np.float64 and array.tolist() == [1.0, 2.5]


def test_bytes_and_bool_tensors_decode() -> None:
    text = decode_input(
        0, tensor("BYTES", [2], ["a", "é"], name="t"), TensorSpec("t", "BYTES", (-1,))
    )
    flags = decode_input(
        0, tensor("BOOL", [1, 2], [True, False], name="b"), TensorSpec("b", "BOOL", (1, 2))
    )
    assert text.dtype == object and text.tolist() == ["a", "é"]
    assert flags.dtype == np.bool_ and flags.tolist() == [[True, False]]


def test_encode_output_is_flat_row_major() -> None:
    out = encode_output("probabilities", np.arange(6, dtype=np.float32).reshape(2, 3) / 2)
    assert out == {
        "name": "probabilities",
        "datatype": "FP32",
        "shape": [2, 3],
        "data": [0.0, 0.5, 1.0, 1.5, 2.0, 2.5],
    }


@pytest.mark.parametrize("datatype", DATATYPES)
def test_every_datatype_encodes_as_itself(datatype: str) -> None:
    values = {"BOOL": [True, False], "BYTES": ["a", "b"]}.get(datatype, [1, 2])
    out = encode_output("y", np.asarray(values, dtype=V2_TO_NUMPY[datatype]))
    assert out["datatype"] == datatype
    assert out["data"] == values


def test_strings_from_a_model_encode_as_text() -> None:
    out = encode_output("y", np.array([b"caf\xc3\xa9", "x"], dtype=object))
    assert out["datatype"] == "BYTES" and out["data"] == ["café", "x"]
    assert encode_output("z", np.array(["u"]))["datatype"] == "BYTES"
